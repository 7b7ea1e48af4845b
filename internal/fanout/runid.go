package fanout

import (
	"time"

	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/schedule"
)

// RetryWindow is how long after a schedule occurrence a firing still counts
// as that occurrence (a retry of the timer function or a late start).
const RetryWindow = 15 * time.Minute

// RunIDLayout formats the time part of run IDs.
const RunIDLayout = "20060102T150405Z"

// Firing is one invocation of the timer function.
type Firing struct {
	// At is when the host fired the timer (Metadata.sys.UtcNow).
	At time.Time
	// PastDue is the timer binding's IsPastDue: the host is catching up
	// an occurrence it missed.
	PastDue bool
}

// RunID maps a firing to its run ID and trigger (see the package docs):
// "s-<occurrence>" with trigger schedule, or "m-<At>" with trigger manual.
func RunID(s *schedule.Schedule, f Firing) (id, trigger string) {
	at := f.At.UTC()
	if s != nil {
		if occ := s.Prev(at); !occ.IsZero() && (f.PastDue || at.Sub(occ) <= RetryWindow) {
			return "s-" + occ.Format(RunIDLayout), queue.TriggerSchedule
		}
	}
	return "m-" + at.Format(RunIDLayout), queue.TriggerManual
}
