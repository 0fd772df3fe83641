package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/internal/scheduler/schedtest"
	"github.com/ibexrepl/ibex/job"
)

// rieModule is the AWS Lambda Runtime Interface Emulator, built with go build in a
// throwaway module (its dependencies stay out of ours) and cached in the user cache dir.
const (
	rieModule  = "github.com/aws/aws-lambda-runtime-interface-emulator"
	rieVersion = "v0.0.0-20261030222936-bef5c4ba774d"
)

// lockedBuffer collects a process's output safely.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func goCmd(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	return cmd.CombinedOutput()
}

// buildRIE returns the path of aws-lambda-rie, building it the first time; it skips the
// test when the emulator cannot be fetched or built.
func buildRIE(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "ibex-test-tools", "aws-lambda-rie-"+rieVersion)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	dir := t.TempDir()
	if out, err := goCmd(dir, "mod", "init", "ibex.test/rie"); err != nil {
		t.Fatalf("go mod init: %v\n%s", err, out)
	}
	if out, err := goCmd(dir, "get", rieModule+"/cmd/aws-lambda-rie@"+rieVersion); err != nil {
		t.Skipf("cannot fetch the Lambda Runtime Interface Emulator %s@%s (no network or proxy?): %v\n%s", rieModule, rieVersion, err, out)
	}
	tmp := bin + ".tmp"
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := goCmd(dir, "build", "-o", tmp, rieModule+"/cmd/aws-lambda-rie"); err != nil {
		t.Skipf("cannot build the Lambda Runtime Interface Emulator: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRuntimeInterfaceEmulator runs the real bootstrap under the AWS Lambda Runtime
// Interface Emulator and invokes it over HTTP, as Lambda would.
func TestRuntimeInterfaceEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the end-to-end Lambda test")
	}
	t0 := time.Now()
	rie := buildRIE(t)
	t.Logf("emulator ready: %s", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	f := schedtest.New(t, 2)
	f.AddSync(t, "s")
	pgtest.Exec(t, f.DBs[1].DSN, `UPDATE pgbench_accounts SET abalance = abalance - 7 WHERE aid BETWEEN 500 AND 540`)

	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	if out, err := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", bootstrap, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the bootstrap: %v\n%s", err, out)
	}
	t.Logf("fixture and bootstrap build: %s", time.Since(t0).Round(time.Millisecond))

	addr, apiAddr := freeAddr(t), freeAddr(t)
	var logs lockedBuffer
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", addr, "--runtime-api-address", apiAddr, bootstrap)
	cmd.Env = append(os.Environ(), "IBEX_DSN="+f.DSN(), "IBEX_SYNC=s", "IBEX_LOG_FORMAT=json", "AWS_LAMBDA_FUNCTION_TIMEOUT=60")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the emulator and the bootstrap it starts
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c0 := time.Now()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		t.Logf("emulator stopped in %s", time.Since(c0).Round(time.Millisecond))
		if t.Failed() {
			t.Logf("emulator output:\n%s", logs.String())
		}
	})
	if _, ok := schedtest.WaitFor(10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); !ok {
		t.Fatal("the emulator does not listen")
	}

	url := "http://" + addr + "/2015-03-31/functions/function/invocations"
	invoke := func(payload string) (int, []byte) {
		resp, err := http.Post(url, "application/json", strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}

	// What EventBridge Scheduler sends with input {"sync":"s"}.
	t0 = time.Now()
	code, body := invoke(`{"sync":"s"}`)
	t.Logf("first invocation (cold start and run): %s", time.Since(t0).Round(time.Millisecond))
	var res job.Result
	if code != 200 || json.Unmarshal(body, &res) != nil {
		t.Fatalf("invoke: %d %s", code, body)
	}
	if res.Sync != "s" || res.State != "good" || res.Inserts != 41 || res.Deletes != 41 {
		t.Fatalf("result: %s", body)
	}
	if ok, which := f.Same(t); !ok {
		t.Fatalf("not the same after the run: %s", which)
	}
	// The Scheduler envelope without input (IBEX_SYNC), on the same warm process.
	code, body = invoke(`{"source":"aws.scheduler","detail-type":"Scheduled Event","detail":"{}"}`)
	res = job.Result{}
	if code != 200 || json.Unmarshal(body, &res) != nil || res.State != "empty" {
		t.Fatalf("second invoke: %d %s", code, body)
	}
	// An unknown sync: the function error Lambda reports.
	_, body = invoke(`{"sync":"nosuch"}`)
	var fe struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}
	if json.Unmarshal(body, &fe) != nil || !strings.Contains(fe.ErrorMessage, "not found") {
		t.Errorf("unknown sync: %s", body)
	}
	t.Logf("three invocations: %s", time.Since(t0).Round(time.Millisecond))
	if !strings.Contains(logs.String(), `"msg":"sync s: good`) {
		t.Errorf("the function's JSON log lacks the run summary:\n%s", logs.String())
	}
}
