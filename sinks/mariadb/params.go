package mariadb

import (
	"crypto/tls"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/ibexrepl/ibex/sinks"
)

// The params a db of type mariadb (or mysql) takes, and their defaults.
var (
	allowed  = []string{"connect_timeout", "dbname", "host", "port", "tls", "user"}
	required = []string{"dbname", "user"}
)

const (
	defaultHost    = "127.0.0.1"
	defaultPort    = "3306"
	defaultTimeout = 10 * time.Second
)

// CheckParams checks the params a user gave for a mariadb (or mysql) db, without
// connecting: every keyword is known, the required ones (dbname, user) are there, and
// the values parse.
func CheckParams(params map[string]string) error {
	_, err := parseParams(params)
	return err
}

// parseParams checks params and returns the driver's configuration (without password).
func parseParams(params map[string]string) (*mysql.Config, error) {
	if err := sinks.CheckSettings("mariadb", params, allowed); err != nil {
		return nil, err
	}
	for _, k := range required {
		if params[k] == "" {
			return nil, fmt.Errorf("param %s is required for type mariadb", k)
		}
	}
	host, port := params["host"], params["port"]
	if host == "" {
		host = defaultHost
	}
	if port == "" {
		port = defaultPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("param port: %q is not a port number (1 to 65535)", port)
	}
	timeout := defaultTimeout
	if v := params["connect_timeout"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("param connect_timeout: %q is not a whole number of seconds (1 or more)", v)
		}
		timeout = time.Duration(n) * time.Second
	}
	cfg := mysql.NewConfig()
	cfg.User = params["user"]
	cfg.Net = "tcp"
	if strings.HasPrefix(host, "/") { // a Unix socket's path
		cfg.Net, cfg.Addr = "unix", host
	} else {
		cfg.Addr = joinHostPort(host, port)
	}
	cfg.DBName = params["dbname"]
	cfg.Timeout = timeout
	cfg.Logger = &mysql.NopLogger{}
	switch params["tls"] {
	case "", "off":
	case "on":
		cfg.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	case "skip-verify":
		cfg.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	default:
		return nil, fmt.Errorf("param tls: %q is not off, on or skip-verify", params["tls"])
	}
	if err := cfg.Apply(mysql.Charset("utf8mb4", "")); err != nil {
		return nil, err
	}
	return cfg, nil
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}
