package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Handler serves /metrics (Prometheus) and /healthz (200 when the control database
// answers, 503 otherwise).
func (s *Scheduler) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.met.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.store == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "starting")
			return
		}
		var one int
		if err := s.store.Pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "control database unreachable")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func (s *Scheduler) serveHTTP() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("serving /metrics on %s: %w", s.cfg.Listen, err)
	}
	s.httpAddr = ln.Addr()
	s.httpSrv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.httpSrv.Serve(ln); err != nil && err != http.ErrServerClosed {
			s.log.Error("HTTP server stopped", slog.String("error", err.Error()))
		}
	}()
	s.log.Info("serving /metrics and /healthz", slog.String("address", s.httpAddr.String()))
	return nil
}

func (s *Scheduler) shutdownHTTP() {
	if s.httpSrv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.httpSrv.Shutdown(ctx)
}
