package scheduler

import (
	"context"

	"github.com/acrpurge/acrpurge/internal/funchost"
)

// Name is the function's name (its folder under functions/), and
// BindingTimer the name of its timer trigger binding in function.json.
const (
	Name         = "Scheduler"
	BindingTimer = "timer"
)

// Invoke serves one timer firing sent by the Functions host. The timer
// binding is read tolerantly: without it the firing is at sys.UtcNow (or
// now) and not past due.
func (s *Scheduler) Invoke(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
	f := Firing{At: req.Sys().UtcNow}
	if t, err := req.Timer(BindingTimer); err != nil {
		s.log.Warn("timer binding unreadable; treating the firing as on time", "err", err)
	} else {
		f.PastDue = t.IsPastDue
	}
	if f.At.IsZero() {
		f.At = s.o.Now()
	}
	sum, err := s.Run(ctx, f)
	if err != nil {
		return nil, err
	}
	return &funchost.Response{Logs: []string{sum.String()}}, nil
}
