package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/logging"
	"github.com/ibexrepl/ibex/job"
)

// DefaultDeadlineMargin is how long before the invocation's deadline a run stops taking
// new batches, so that it can commit and record itself (IBEX_DEADLINE_MARGIN overrides).
const DefaultDeadlineMargin = 10 * time.Second

// maxGrace bounds the time kept, after a run's deadline margin, to roll back a batch the
// deadline cuts and record the run (half the margin, at most this).
const maxGrace = 5 * time.Second

// secretTTL is how long a secret read from Secrets Manager is reused by warm invocations.
const secretTTL = 5 * time.Minute

// secretGetter reads a secret's string by ARN or name.
type secretGetter interface {
	GetSecret(ctx context.Context, id string) (string, error)
}

type cachedSecret struct {
	value string
	at    time.Time
}

// handler runs one sync per invocation. Connections are opened for the invocation and
// closed at its end (a frozen execution environment's connections may be dead when it
// thaws); secrets are reused across warm invocations for secretTTL.
type handler struct {
	getenv  func(string) string
	setenv  func(k, v string) error
	secrets secretGetter // nil: AWS Secrets Manager, made on first use
	logger  *slog.Logger

	mu    sync.Mutex
	cache map[string]cachedSecret
	now   func() time.Time
}

func newHandler() *handler {
	h := &handler{getenv: os.Getenv, setenv: os.Setenv, now: time.Now}
	l, err := logging.New(os.Stdout, envOr(h.getenv, "IBEX_LOG_LEVEL", "normal"), envOr(h.getenv, "IBEX_LOG_FORMAT", "text"))
	if err != nil {
		l, _ = logging.New(os.Stdout, "normal", "text")
		l.Warn("ignoring the log settings: " + err.Error())
	}
	h.logger = l
	return h
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

// Handle runs the sync the event names (or IBEX_SYNC) once and returns what it did. A
// bad run, or one that cannot start, is an error.
func (h *handler) Handle(ctx context.Context, event json.RawMessage) (*job.Result, error) {
	logger := h.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	name, err := syncFromEvent(event)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = h.getenv("IBEX_SYNC")
	}
	if name == "" {
		return nil, errors.New(`no sync to run: the event names none (send {"sync":"NAME"}) and IBEX_SYNC is not set`)
	}
	margin := DefaultDeadlineMargin
	if v := h.getenv("IBEX_DEADLINE_MARGIN"); v != "" {
		if margin, err = time.ParseDuration(v); err != nil || margin <= 0 {
			return nil, fmt.Errorf("IBEX_DEADLINE_MARGIN=%q: want a positive duration such as 10s", v)
		}
	}
	if err := h.loadSecretEnv(ctx); err != nil {
		return nil, err
	}
	dsn, err := h.dsn(ctx)
	if err != nil {
		return nil, err
	}

	store, err := control.Open(ctx, dsn, logger)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	opts := job.Options{Logger: logger, DeadlineMargin: margin}
	runCtx := ctx
	if dl, ok := ctx.Deadline(); ok {
		opts.Deadline = dl
		// The run takes no new batch once less than margin remains; a batch still under
		// way when only the grace remains is cut, so that it is rolled back, the run
		// recorded and its lock released while the invocation lives: at its deadline
		// Lambda freezes the process, connections and lock included.
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(ctx, dl.Add(-min(margin/2, maxGrace)))
		defer cancel()
	}
	res, err := job.Run(runCtx, store, name, opts)
	cut := errors.Is(runCtx.Err(), context.DeadlineExceeded) && (err != nil || res != nil && res.State == control.StateBad)
	if cut && res != nil && res.RunID != 0 {
		// Cut by the deadline: the batches committed before it keep their progress and the
		// next invocation goes on from there. Only a run that got nothing done is an error.
		res.Partial = true
		if res.Inserts+res.Deletes+res.Conflicts == 0 {
			logger.Error(res.Summary(), slog.String("sync", name), slog.Int64("run", res.RunID), slog.Bool("partial", true))
			return nil, fmt.Errorf("%s: the invocation's deadline came before the first batch was done: raise the function's timeout or IBEX_DEADLINE_MARGIN, or lower the sync's batch_size", res.Summary())
		}
		logger.Warn("the invocation's deadline cut the run: its committed batches are kept, the next run goes on", slog.String("sync", name),
			slog.Int64("run", res.RunID), slog.Bool("partial", true), slog.Int64("inserts", res.Inserts), slog.Int64("deletes", res.Deletes))
		return res, nil
	}
	if res == nil {
		if errors.Is(err, job.ErrInactive) {
			logger.Info("sync is inactive: not run", slog.String("sync", name))
			return &job.Result{Sync: name, State: control.StateInactive, Started: time.Now(), Error: err.Error()}, nil
		}
		return nil, err
	}
	if err != nil || res.State == control.StateBad {
		logger.Error(res.Summary(), slog.String("sync", name), slog.Int64("run", res.RunID))
		return nil, errors.New(res.Summary())
	}
	logger.Info(res.Summary(), slog.String("sync", name), slog.Int64("run", res.RunID), slog.Bool("partial", res.Partial))
	return res, nil
}

// syncFromEvent finds the sync an invocation names. It accepts:
//   - what EventBridge Scheduler sends when the schedule's input is set: exactly that
//     input, e.g. {"sync":"foobar"} (also a plain JSON string "foobar");
//   - EventBridge Scheduler's envelope without input, whose detail is a JSON string
//     ("{}" or "{\"sync\":\"foobar\"}");
//   - a legacy EventBridge scheduled rule's event, whose detail is an object.
//
// It returns "" when the event names no sync (the caller falls back to IBEX_SYNC).
func syncFromEvent(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("invalid event: %w", err)
		}
		s = strings.TrimSpace(s)
		if strings.HasPrefix(s, "{") {
			return syncFromEvent(json.RawMessage(s))
		}
		return s, nil
	}
	var ev struct {
		Sync   json.RawMessage `json:"sync"`
		Detail json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		return "", fmt.Errorf(`invalid event (want {"sync":"NAME"} or an EventBridge event): %w`, err)
	}
	if len(ev.Sync) > 0 && string(ev.Sync) != "null" {
		var s string
		if err := json.Unmarshal(ev.Sync, &s); err != nil {
			return "", fmt.Errorf(`invalid event: "sync" must be a string: %s`, ev.Sync)
		}
		return strings.TrimSpace(s), nil
	}
	if len(ev.Detail) > 0 {
		return syncFromEvent(ev.Detail)
	}
	return "", nil
}

// dsn is the control database's conninfo: from IBEX_DSN_SECRET_ARN when set, else
// IBEX_DSN. The secret is either the conninfo or URL itself, or a JSON object with host,
// port, username (or user), password and dbname, as RDS writes them.
func (h *handler) dsn(ctx context.Context) (string, error) {
	arn := h.getenv("IBEX_DSN_SECRET_ARN")
	if arn == "" {
		return h.getenv("IBEX_DSN"), nil
	}
	v, err := h.secret(ctx, arn)
	if err != nil {
		return "", fmt.Errorf("IBEX_DSN_SECRET_ARN: %w", err)
	}
	v = strings.TrimSpace(v)
	if !strings.HasPrefix(v, "{") {
		return v, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return "", fmt.Errorf("IBEX_DSN_SECRET_ARN: the secret looks like JSON but is not valid JSON")
	}
	conn := map[string]string{}
	for k, val := range m {
		key := k
		switch k {
		case "username":
			key = "user"
		case "dbname", "host", "port", "user", "password", "sslmode", "sslrootcert", "application_name":
		default:
			continue // engine, dbInstanceIdentifier, ...
		}
		switch x := val.(type) {
		case string:
			conn[key] = x
		case float64:
			conn[key] = strconv.FormatFloat(x, 'f', -1, 64)
		}
	}
	return dbconn.ConnString(conn), nil
}

// loadSecretEnv sets the variables of IBEX_SECRET_ENV ({"VAR":"secret ARN",...}) from
// Secrets Manager, so that dbs with pass=env:VAR find their passwords. A secret that is a
// JSON object with a "password" field (as RDS writes them) gives that field.
func (h *handler) loadSecretEnv(ctx context.Context) error {
	v := strings.TrimSpace(h.getenv("IBEX_SECRET_ENV"))
	if v == "" {
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return fmt.Errorf(`IBEX_SECRET_ENV: want a JSON object {"VAR":"secret ARN",...}: %w`, err)
	}
	vars := make([]string, 0, len(m))
	for k := range m {
		vars = append(vars, k)
	}
	sort.Strings(vars)
	for _, k := range vars {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("IBEX_SECRET_ENV: invalid variable name %q", k)
		}
		s, err := h.secret(ctx, m[k])
		if err != nil {
			return fmt.Errorf("IBEX_SECRET_ENV %s: %w", k, err)
		}
		if t := strings.TrimSpace(s); strings.HasPrefix(t, "{") {
			var obj map[string]any
			if json.Unmarshal([]byte(t), &obj) == nil {
				if pw, ok := obj["password"].(string); ok {
					s = pw
				}
			}
		}
		if err := h.setenv(k, s); err != nil {
			return fmt.Errorf("IBEX_SECRET_ENV %s: %w", k, err)
		}
	}
	return nil
}

// secret reads a secret, reusing a copy younger than secretTTL.
func (h *handler) secret(ctx context.Context, id string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now
	if h.now != nil {
		now = h.now
	}
	if c, ok := h.cache[id]; ok && now().Sub(c.at) < secretTTL {
		return c.value, nil
	}
	if h.secrets == nil {
		h.secrets = &awsSecrets{}
	}
	v, err := h.secrets.GetSecret(ctx, id)
	if err != nil {
		return "", err
	}
	if h.cache == nil {
		h.cache = map[string]cachedSecret{}
	}
	h.cache[id] = cachedSecret{value: v, at: now()}
	return v, nil
}
