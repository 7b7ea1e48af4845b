package checkpoint

import (
	"fmt"
	"time"
)

// Row and partition keys of the table layout (see the package docs). Memory
// uses the same keys to order runs and rejections, so both stores sort alike.
const (
	runRowKey     = "run"
	lastRowKey    = "last"
	runsPartition = "runs"
	rejPartition  = "rejected"
	batchPrefix   = "batch|"
	repoPrefix    = "repo|"
	runPrefix     = "run|"
	// rangeEnd follows '|' in ASCII, so "p|" <= key < "p}" selects prefix "p|".
	rangeEnd = "}"
)

func runPartition(runID string) string { return runPrefix + keyPart(runPrefix, runID) }

func batchRow(n int) string { return fmt.Sprintf("%s%06d", batchPrefix, n) }

func repoRow(name string) string { return repoPrefix + keyPart(repoPrefix, name) }

func lastPartition(repo string) string { return repoPrefix + keyPart(repoPrefix, repo) }

// timedRow is "{invertedTicks:019d}|{escaped id}": ascending order is newest first.
func timedRow(t time.Time, id string) string {
	prefix := invertedTicks(t) + "|"
	return prefix + keyPart(prefix, id)
}
