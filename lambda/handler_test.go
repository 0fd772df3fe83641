package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/internal/scheduler/schedtest"
	"github.com/ibexrepl/ibex/job"
)

func TestSyncFromEvent(t *testing.T) {
	for _, c := range []struct{ event, want string }{
		// EventBridge Scheduler with input: the input itself.
		{`{"sync":"foobar"}`, "foobar"},
		{` {"sync": " foobar "} `, "foobar"},
		{`"foobar"`, "foobar"},
		// EventBridge Scheduler without input: an envelope whose detail is a JSON string.
		{`{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.scheduler","account":"1","time":"2026-11-26T00:00:00Z","region":"eu-west-1","resources":["arn:aws:scheduler:::schedule/default/s"],"detail":"{}"}`, ""},
		{`{"source":"aws.scheduler","detail-type":"Scheduled Event","detail":"{\"sync\":\"foobar\"}"}`, "foobar"},
		// Legacy scheduled rule: detail is an object.
		{`{"version":"0","source":"aws.events","detail-type":"Scheduled Event","detail":{}}`, ""},
		{`{"source":"aws.events","detail-type":"Scheduled Event","detail":{"sync":"foobar"}}`, "foobar"},
		// Nothing: IBEX_SYNC.
		{``, ""}, {`null`, ""}, {`{}`, ""}, {`{"sync":null}`, ""},
	} {
		got, err := syncFromEvent(json.RawMessage(c.event))
		if err != nil || got != c.want {
			t.Errorf("syncFromEvent(%s) = %q, %v; want %q", c.event, got, err, c.want)
		}
	}
	for _, bad := range []string{`{`, `{"sync":1}`, `[1]`, `{"detail":"{nope"}`} {
		if got, err := syncFromEvent(json.RawMessage(bad)); err == nil {
			t.Errorf("syncFromEvent(%s) = %q, want an error", bad, got)
		}
	}
}

type fakeSecrets struct {
	values map[string]string
	calls  int
}

func (f *fakeSecrets) GetSecret(_ context.Context, id string) (string, error) {
	f.calls++
	v, ok := f.values[id]
	if !ok {
		return "", errors.New("ResourceNotFoundException: secret " + id + " not found")
	}
	return v, nil
}

func newTestHandler(env map[string]string, secrets secretGetter) *handler {
	return &handler{
		getenv:  func(k string) string { return env[k] },
		setenv:  os.Setenv,
		secrets: secrets,
		now:     time.Now,
	}
}

// invoke calls the handler the way the Lambda runtime does: JSON in, JSON out.
func invoke(t *testing.T, h *handler, payload string, timeout time.Duration) (*job.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: "test"})
	start := time.Now()
	out, err := lambda.NewHandler(h.Handle).Invoke(ctx, []byte(payload))
	t.Logf("invoke %s: %s", payload, time.Since(start).Round(time.Millisecond))
	if err != nil {
		return nil, err
	}
	var res job.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("result %s: %v", out, err)
	}
	return &res, nil
}

func TestHandler(t *testing.T) {
	t0 := time.Now()
	f := schedtest.New(t, 2)
	f.AddSync(t, "s")
	t.Logf("setup: %s", time.Since(t0).Round(time.Millisecond))
	env := map[string]string{"IBEX_DSN": f.DSN()}
	h := newTestHandler(env, nil)

	// A change on t1; the raw Scheduler input names the sync.
	pgtest.Exec(t, f.DBs[0].DSN, `UPDATE pgbench_accounts SET abalance = abalance + 3 WHERE aid <= 25`)
	res, err := invoke(t, h, `{"sync":"s"}`, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != "good" || res.Inserts != 25 || res.Deletes != 25 || res.RunID == 0 {
		t.Fatalf("result %+v", res)
	}
	if ok, which := f.Same(t); !ok {
		t.Fatalf("not the same after the run: %s", which)
	}

	// No sync in the event (Scheduler envelope without input): IBEX_SYNC, else an error.
	envelope := `{"source":"aws.scheduler","detail-type":"Scheduled Event","detail":"{}"}`
	if _, err := invoke(t, h, envelope, time.Minute); err == nil || !strings.Contains(err.Error(), "IBEX_SYNC") {
		t.Errorf("no sync anywhere: %v", err)
	}
	env["IBEX_SYNC"] = "s"
	if res, err = invoke(t, h, envelope, time.Minute); err != nil || res.State != "empty" {
		t.Errorf("IBEX_SYNC: %+v, %v", res, err)
	}

	// The invocation's deadline: with less time left than the margin, the run takes no
	// batch and says it stopped early; the next run applies the change.
	pgtest.Exec(t, f.DBs[1].DSN, `UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 3`)
	env["IBEX_DEADLINE_MARGIN"] = "1h"
	if res, err = invoke(t, h, `{"sync":"s"}`, time.Minute); err != nil || !res.Partial || res.Inserts != 0 {
		t.Errorf("deadline within the margin: %+v, %v", res, err)
	}
	delete(env, "IBEX_DEADLINE_MARGIN")
	if res, err = invoke(t, h, `{"sync":"s"}`, time.Minute); err != nil || res.Partial || res.Inserts != 1 {
		t.Errorf("after the partial run: %+v, %v", res, err)
	}

	// The control DSN and a db password from Secrets Manager.
	const passVar = "IBEX_TEST_LAMBDA_T2_PASS"
	os.Unsetenv(passVar)
	t.Cleanup(func() { os.Unsetenv(passVar) })
	f.Ibex(t, "update", "db", "t2", "pass=env:"+passVar, "--force")
	env = map[string]string{"IBEX_DSN_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:dsn"}
	secrets := &fakeSecrets{values: map[string]string{
		"arn:aws:secretsmanager:eu-west-1:1:secret:dsn": f.DSN(),
		"arn:aws:secretsmanager:eu-west-1:1:secret:t2":  `{"username":"postgres","password":"unused-with-trust"}`,
	}}
	h = newTestHandler(env, secrets)
	if _, err := invoke(t, h, `{"sync":"s"}`, time.Minute); err == nil || !strings.Contains(err.Error(), passVar) {
		t.Errorf("without IBEX_SECRET_ENV the run should fail on t2's password: %v", err)
	}
	env["IBEX_SECRET_ENV"] = `{"` + passVar + `":"arn:aws:secretsmanager:eu-west-1:1:secret:t2"}`
	pgtest.Exec(t, f.DBs[0].DSN, `UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1`)
	if res, err = invoke(t, h, `{"sync":"s"}`, time.Minute); err != nil || res.State != "good" || res.Inserts != 1 {
		t.Errorf("with IBEX_SECRET_ENV: %+v, %v", res, err)
	}
	if got := os.Getenv(passVar); got != "unused-with-trust" {
		t.Errorf("%s = %q, want the secret's password field", passVar, got)
	}
	calls := secrets.calls
	if _, err = invoke(t, h, `{"sync":"s"}`, time.Minute); err != nil || secrets.calls != calls {
		t.Errorf("a warm invocation read the secrets again (%d calls, then %d): %v", calls, secrets.calls, err)
	}
	// A DSN secret as RDS writes it (JSON).
	secrets.values["arn:aws:secretsmanager:eu-west-1:1:secret:dsn"] = `{"engine":"postgres","host":"` + f.Ctl.Conn["host"] +
		`","port":` + f.Ctl.Conn["port"] + `,"username":"` + f.Ctl.Conn["user"] + `","password":"x","dbname":"` + f.Ctl.Conn["dbname"] + `"}`
	h.cache = nil
	if res, err = invoke(t, h, `{"sync":"s"}`, time.Minute); err != nil || res.State != "empty" {
		t.Errorf("JSON DSN secret: %+v, %v", res, err)
	}
	// A missing secret is an error that names it.
	env["IBEX_DSN_SECRET_ARN"] = "arn:nope"
	if _, err = invoke(t, h, `{"sync":"s"}`, time.Minute); err == nil || !strings.Contains(err.Error(), "arn:nope") {
		t.Errorf("missing secret: %v", err)
	}

	// An inactive sync is not run; a bad run is an error.
	h = newTestHandler(map[string]string{"IBEX_DSN": f.DSN()}, nil)
	f.Ibex(t, "update", "db", "t2", "pass=")
	f.Ibex(t, "update", "sync", "s", "status=inactive")
	if res, err = invoke(t, h, `{"sync":"s"}`, time.Minute); err != nil || res.State != control.StateInactive {
		t.Errorf("inactive sync: %+v, %v", res, err)
	}
	f.Ibex(t, "update", "sync", "s", "status=active")
	f.Ibex(t, "update", "db", "t2", "port=1", "--force")
	if _, err = invoke(t, h, `{"sync":"s"}`, time.Minute); err == nil || !strings.Contains(err.Error(), "bad") {
		t.Errorf("unreachable db: %v, want an error", err)
	}
	if _, err = invoke(t, h, `{"sync":"nosuch"}`, time.Minute); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown sync: %v", err)
	}
}
