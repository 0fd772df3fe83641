// Package k8s_test checks the Kubernetes manifests offline: there is no API server here,
// so every YAML document is strictly decoded into its k8s.io/api type (an unknown or
// misspelt field is an error) and the facts ibex relies on are asserted.
package k8s_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// doc is one YAML document of a manifest file.
type doc struct {
	file  string
	index int
	body  []byte
}

func (d doc) String() string { return fmt.Sprintf("%s (document %d)", d.file, d.index+1) }

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// loadDocs returns every non-empty YAML document of the *.yaml and *.yml files here.
func loadDocs(t *testing.T) []doc {
	t.Helper()
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files in deploy/k8s")
	}
	var docs []doc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, part := range docSeparator.Split(string(b), -1) {
			if isEmptyYAML(part) {
				continue
			}
			docs = append(docs, doc{file: f, index: i, body: []byte(part)})
		}
	}
	return docs
}

func isEmptyYAML(s string) bool {
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

// manifests holds every decoded object, by kind.
type manifests struct {
	cronJobs    map[string]*batchv1.CronJob
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	secrets     map[string]*corev1.Secret
}

// decodeAll strictly decodes every document according to its apiVersion and kind.
func decodeAll(t *testing.T) manifests {
	t.Helper()
	m := manifests{
		cronJobs:    map[string]*batchv1.CronJob{},
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		secrets:     map[string]*corev1.Secret{},
	}
	for _, d := range loadDocs(t) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(d.body, &head); err != nil {
			t.Errorf("%s: not YAML: %v", d, err)
			continue
		}
		if head.Metadata.Name == "" {
			t.Errorf("%s: %s without metadata.name", d, head.Kind)
			continue
		}
		var (
			obj  any
			name = head.Metadata.Name
		)
		switch head.APIVersion + " " + head.Kind {
		case "batch/v1 CronJob":
			o := &batchv1.CronJob{}
			obj, m.cronJobs[name] = o, o
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			obj, m.deployments[name] = o, o
		case "v1 Service":
			o := &corev1.Service{}
			obj, m.services[name] = o, o
		case "v1 Secret":
			o := &corev1.Secret{}
			obj, m.secrets[name] = o, o
		default:
			t.Errorf("%s: unexpected apiVersion/kind %q %q", d, head.APIVersion, head.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict(d.body, obj); err != nil {
			t.Errorf("%s (%s %s): strict decode: %v", d, head.Kind, name, err)
		}
	}
	return m
}

func TestStrictDecodeRejectsUnknownField(t *testing.T) {
	// The check itself must bite: a misspelt field is an error, not silently dropped.
	bad := []byte("apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: x\nspec:\n  concurencyPolicy: Forbid\n")
	if err := yaml.UnmarshalStrict(bad, &batchv1.CronJob{}); err == nil {
		t.Fatal("UnmarshalStrict accepted the unknown field concurencyPolicy")
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := decodeAll(t)
	if len(m.cronJobs) == 0 {
		t.Error("no CronJob")
	}
	if len(m.deployments) == 0 {
		t.Error("no Deployment")
	}
	if len(m.services) == 0 {
		t.Error("no Service")
	}
	if len(m.secrets) == 0 {
		t.Error("no example Secret")
	}
}

func TestCronJob(t *testing.T) {
	m := decodeAll(t)
	cj := m.cronJobs["ibex-foobar"]
	if cj == nil {
		t.Fatal("no CronJob ibex-foobar")
	}
	s := cj.Spec
	if s.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("concurrencyPolicy = %q, want Forbid", s.ConcurrencyPolicy)
	}
	if s.Schedule == "" {
		t.Error("schedule is empty")
	}
	if s.StartingDeadlineSeconds == nil || *s.StartingDeadlineSeconds <= 0 {
		t.Error("startingDeadlineSeconds not set")
	}
	if s.SuccessfulJobsHistoryLimit == nil || s.FailedJobsHistoryLimit == nil {
		t.Error("jobs history limits not set")
	}
	js := s.JobTemplate.Spec
	if js.ActiveDeadlineSeconds == nil || *js.ActiveDeadlineSeconds <= 0 {
		t.Error("activeDeadlineSeconds not set")
	}
	if js.BackoffLimit == nil || *js.BackoffLimit > 1 {
		t.Errorf("backoffLimit = %v, want 0 or 1 (the next tick is the retry)", js.BackoffLimit)
	}
	pod := js.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy = %q, want Never", pod.RestartPolicy)
	}
	c := onlyContainer(t, "CronJob", pod)
	if c == nil {
		return
	}
	if len(c.Command) == 0 || !strings.HasSuffix(c.Command[0], "/runonce") {
		t.Errorf("command = %q, want runonce", c.Command)
	}
	if i := slices.Index(c.Command, "--sync"); i < 0 || i+1 >= len(c.Command) || c.Command[i+1] == "" {
		t.Errorf("command = %q, want --sync NAME", c.Command)
	}
	checkCommon(t, "CronJob", pod, c)
}

func TestSchedulerDeployment(t *testing.T) {
	m := decodeAll(t)
	dep := m.deployments["ibex-scheduler"]
	if dep == nil {
		t.Fatal("no Deployment ibex-scheduler")
	}
	pod := dep.Spec.Template.Spec
	c := onlyContainer(t, "Deployment", pod)
	if c == nil {
		return
	}
	if len(c.Command) == 0 || !strings.HasSuffix(c.Command[0], "/scheduler") {
		t.Errorf("command = %q, want the scheduler", c.Command)
	}
	var metricsPort *corev1.ContainerPort
	for i := range c.Ports {
		if c.Ports[i].ContainerPort == 9187 {
			metricsPort = &c.Ports[i]
		}
	}
	if metricsPort == nil {
		t.Fatalf("no containerPort 9187 in %+v", c.Ports)
	}
	for what, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", what)
			continue
		}
		if p.HTTPGet.Path != "/healthz" {
			t.Errorf("%s probe path = %q, want /healthz", what, p.HTTPGet.Path)
		}
		port := p.HTTPGet.Port
		if port.IntValue() != 9187 && port.String() != metricsPort.Name {
			t.Errorf("%s probe port = %s, want 9187 (or %q)", what, port.String(), metricsPort.Name)
		}
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < 30 {
		t.Error("terminationGracePeriodSeconds not set to at least 30")
	}
	checkCommon(t, "Deployment", pod, c)

	// The Service must select these pods and expose the metrics port.
	exposed := false
	for name, svc := range m.services {
		if !selects(svc.Spec.Selector, dep.Spec.Template.Labels) {
			continue
		}
		has9187 := slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 9187 })
		if !has9187 {
			t.Errorf("Service %s selects the scheduler but does not expose 9187", name)
		}
		exposed = exposed || has9187
	}
	if !exposed {
		t.Error("no Service exposes the scheduler's port 9187")
	}
	if !selects(dep.Spec.Selector.MatchLabels, dep.Spec.Template.Labels) {
		t.Error("Deployment selector does not match its pod labels")
	}
}

func TestExampleSecretsMatchReferences(t *testing.T) {
	m := decodeAll(t)
	for _, s := range m.secrets {
		for k, v := range s.StringData {
			if !strings.Contains(v, "PLACEHOLDER") {
				t.Errorf("Secret %s key %s: example value does not look like a placeholder", s.Name, k)
			}
		}
	}
	// Every secretKeyRef of the workloads names a Secret and key shown in the example.
	var pods []corev1.PodSpec
	for _, cj := range m.cronJobs {
		pods = append(pods, cj.Spec.JobTemplate.Spec.Template.Spec)
	}
	for _, d := range m.deployments {
		pods = append(pods, d.Spec.Template.Spec)
	}
	for _, pod := range pods {
		for _, c := range pod.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				s := m.secrets[ref.Name]
				if s == nil {
					t.Errorf("env %s: Secret %q not in secret.example.yaml", e.Name, ref.Name)
					continue
				}
				if _, ok := s.StringData[ref.Key]; !ok {
					t.Errorf("env %s: Secret %q has no key %q in the example", e.Name, ref.Name, ref.Key)
				}
			}
		}
	}
}

func onlyContainer(t *testing.T, what string, pod corev1.PodSpec) *corev1.Container {
	t.Helper()
	if len(pod.Containers) != 1 {
		t.Errorf("%s: %d containers, want 1", what, len(pod.Containers))
		return nil
	}
	return &pod.Containers[0]
}

// checkCommon asserts what every ibex pod must have: the control DSN from a Secret,
// JSON logs, a locked-down security context and a memory limit.
func checkCommon(t *testing.T, what string, pod corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("%s: env %s set twice", what, e.Name)
		}
		env[e.Name] = e
	}
	dsn, ok := env["IBEX_DSN"]
	switch {
	case !ok:
		t.Errorf("%s: no IBEX_DSN", what)
	case dsn.Value != "" || dsn.ValueFrom == nil || dsn.ValueFrom.SecretKeyRef == nil:
		t.Errorf("%s: IBEX_DSN must come from a secretKeyRef", what)
	case dsn.ValueFrom.SecretKeyRef.Name != "ibex-control" || dsn.ValueFrom.SecretKeyRef.Key != "dsn":
		t.Errorf("%s: IBEX_DSN from %s/%s, want ibex-control/dsn", what,
			dsn.ValueFrom.SecretKeyRef.Name, dsn.ValueFrom.SecretKeyRef.Key)
	}
	for name, e := range env {
		if strings.HasSuffix(name, "PASSWORD") && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("%s: %s must come from a secretKeyRef", what, name)
		}
	}
	if env["IBEX_LOG_FORMAT"].Value != "json" {
		t.Errorf("%s: IBEX_LOG_FORMAT = %q, want json", what, env["IBEX_LOG_FORMAT"].Value)
	}
	if c.Image == "" {
		t.Errorf("%s: no image", what)
	}

	sc := c.SecurityContext
	if sc == nil {
		t.Fatalf("%s: container has no securityContext", what)
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil && pod.SecurityContext != nil {
		nonRoot = pod.SecurityContext.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.Errorf("%s: runAsNonRoot is not true", what)
	}
	uid := sc.RunAsUser
	if uid == nil && pod.SecurityContext != nil {
		uid = pod.SecurityContext.RunAsUser
	}
	if uid == nil || *uid != 65532 {
		t.Errorf("%s: runAsUser = %v, want 65532", what, uid)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", what)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", what)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, corev1.Capability("ALL")) {
		t.Errorf("%s: capabilities do not drop ALL", what)
	}

	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Errorf("%s: no memory limit", what)
	} else if limit.Cmp(resource.MustParse("256Mi")) != 0 {
		t.Errorf("%s: memory limit = %s, want 256Mi", what, limit.String())
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		t.Errorf("%s: no memory request", what)
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
