// Package schedule parses a sync's schedule: an interval ("30s", "5m", "1h") or a cron
// expression of five fields ("*/5 * * * *"), or six with seconds first.
package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Spec is a parsed schedule.
type Spec struct {
	Every       time.Duration // interval; 0 for cron
	Cron        string
	WithSeconds bool
}

// Parse reads a schedule; "" means none (the sync runs only when kicked or autokicked).
func Parse(s string) (*Spec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < time.Second {
			return nil, fmt.Errorf("schedule %q: an interval must be at least 1s", s)
		}
		return &Spec{Every: d}, nil
	}
	fields := strings.Fields(s)
	switch len(fields) {
	case 5:
		if _, err := cron.ParseStandard(s); err != nil {
			return nil, fmt.Errorf("schedule %q: %v", s, err)
		}
		return &Spec{Cron: s}, nil
	case 6:
		p := cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
		if _, err := p.Parse(s); err != nil {
			return nil, fmt.Errorf("schedule %q: %v", s, err)
		}
		return &Spec{Cron: s, WithSeconds: true}, nil
	}
	return nil, fmt.Errorf("schedule %q: use an interval such as 30s or 5m, or a cron expression such as \"*/5 * * * *\"", s)
}

// Check validates a schedule.
func Check(s string) error {
	_, err := Parse(s)
	return err
}
