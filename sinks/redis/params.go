package redis

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/ibexrepl/ibex/sinks"
)

// The params of `ibex add db NAME type=redis ...` (the password is pass=, resolved by the
// CLI into sinks.Config.Password).
var allowed = []string{"connect_timeout", "db", "host", "port", "prefix", "timeout", "tls", "user"}

// Defaults.
const (
	defaultHost           = "127.0.0.1"
	defaultPort           = 6379
	defaultConnectTimeout = 10 * time.Second
	defaultTimeout        = 30 * time.Second
)

// params are the parsed params.
type params struct {
	host           string
	port           int
	db             int
	user           string
	prefix         string
	connectTimeout time.Duration
	timeout        time.Duration
	tls            bool
}

// CheckParams checks the params a user gives for a redis db, without connecting. None
// is required.
func CheckParams(p map[string]string) error {
	_, err := parseParams(p)
	return err
}

func parseParams(p map[string]string) (params, error) {
	if err := sinks.CheckSettings("redis", p, allowed); err != nil {
		return params{}, err
	}
	out := params{host: defaultHost, port: defaultPort, connectTimeout: defaultConnectTimeout, timeout: defaultTimeout}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := p[k]
		var err error
		switch k {
		case "host":
			if v == "" {
				err = fmt.Errorf("is empty")
			}
			out.host = v
		case "port":
			out.port, err = intParam(v, 1, 65535)
		case "db":
			out.db, err = intParam(v, 0, 1<<20)
		case "user":
			out.user = v
		case "prefix":
			out.prefix = v
		case "connect_timeout":
			out.connectTimeout, err = secondsParam(v)
		case "timeout":
			out.timeout, err = secondsParam(v)
		case "tls":
			switch v {
			case "on", "true":
				out.tls = true
			case "off", "false":
				out.tls = false
			default:
				err = fmt.Errorf("is %q, expected on or off", v)
			}
		default:
			return params{}, fmt.Errorf("redis: unknown parameter %q (allowed: %s)", k, strings.Join(allowed, ", "))
		}
		if err != nil {
			return params{}, fmt.Errorf("redis: parameter %s: %w", k, err)
		}
	}
	return out, nil
}

func intParam(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("is %q, expected an integer from %d to %d", v, lo, hi)
	}
	return n, nil
}

func secondsParam(v string) (time.Duration, error) {
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || !(n > 0) || n > 86400 {
		return 0, fmt.Errorf("is %q, expected a number of seconds above 0", v)
	}
	return time.Duration(n * float64(time.Second)), nil
}

// quietLibrary silences go-redis's own logger once (it has only a process-wide one).
var quietLibrary sync.Once

// Open connects to the Redis server c names and checks it answers (PING), within
// connect_timeout.
func Open(ctx context.Context, c sinks.Config) (*Sink, error) {
	quietLibrary.Do(func() {
		// go-redis prints some failures (dial retries) on its own process-wide logger
		// besides returning them; ibex reports them itself, through slog.
		goredis.SetLogger(&logging.VoidLogger{})
	})
	p, err := parseParams(c.Params)
	if err != nil {
		return nil, fmt.Errorf("db %s: %w", c.DB, err)
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr := net.JoinHostPort(p.host, strconv.Itoa(p.port))
	opts := &goredis.Options{
		Addr:     addr,
		Username: p.user,
		Password: c.Password,
		DB:       p.db,
		Protocol: 2,
		// No retries: a unit's commands run on one connection, and a failure fails the
		// run, which the next run repeats.
		MaxRetries:            -1,
		DialTimeout:           p.connectTimeout,
		ReadTimeout:           p.timeout,
		WriteTimeout:          p.timeout,
		ContextTimeoutEnabled: true,
		PoolSize:              3,
		PoolTimeout:           p.timeout,
		MinIdleConns:          0,
		ConnMaxIdleTime:       5 * time.Minute,
		DisableIdentity:       true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	if p.tls {
		opts.TLSConfig = &tls.Config{ServerName: p.host, MinVersion: tls.VersionTLS12}
	}
	client := goredis.NewClient(opts)
	cctx, cancel := context.WithTimeout(ctx, p.connectTimeout)
	defer cancel()
	if err := client.Ping(cctx).Err(); err != nil {
		_ = client.Close()
		msg := err.Error()
		if c.Password != "" {
			msg = strings.ReplaceAll(msg, c.Password, "********")
		}
		return nil, fmt.Errorf("db %s: connecting to redis at %s (db %d) within %s: %s", c.DB, addr, p.db, p.connectTimeout, msg)
	}
	log.Debug("redis sink connected", "db", c.DB, "addr", addr, "redis_db", p.db, "prefix", p.prefix)
	return &Sink{
		db:        c.DB,
		log:       log,
		client:    client,
		prefix:    p.prefix,
		timeout:   p.timeout,
		copyRows:  defaultCopyRows,
		copyBytes: defaultCopyBytes,
		maxUnit:   defaultMaxUnit,
		chunkRows: defaultChunkRows,
	}, nil
}
