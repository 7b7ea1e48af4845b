package scheduler

import (
	"time"

	"github.com/acrpurge/acrpurge/internal/ncrontab"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// RunTimeout bounds one Scheduler invocation (listing, run rows, sending), so
// that its retries stay inside RetryWindow.
const RunTimeout = 10 * time.Minute

// RetryWindow is how long after a schedule occurrence a firing still counts
// as that occurrence: the first attempt and the timer's two retries a minute
// apart (functions/Scheduler/function.json), each bounded by RunTimeout, plus
// a start-up delay. A retry that came later would get a new run ID and send
// every batch again.
const RetryWindow = 3*(RunTimeout+time.Minute) + 7*time.Minute

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
func RunID(s *ncrontab.Schedule, f Firing) (id, trigger string) {
	at := f.At.UTC()
	if s != nil {
		if occ := s.Prev(at); !occ.IsZero() && (f.PastDue || at.Sub(occ) <= RetryWindow) {
			return "s-" + occ.Format(RunIDLayout), queue.TriggerSchedule
		}
	}
	return "m-" + at.Format(RunIDLayout), queue.TriggerManual
}
