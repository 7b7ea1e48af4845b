package acremu

import (
	"time"
)

// Faults are injected into data-plane requests (never into /oauth2).
type Faults struct {
	Latency          time.Duration // added to each data-plane request
	ErrorRate        float64       // fraction answered 500/503 before doing anything
	DropRate         float64       // fraction whose connection is closed before doing anything
	LostResponseRate float64       // fraction of DELETEs performed, then the connection closed
	Seed             int64         // deterministic choice of which requests fail
}

// SetFaults replaces the fault settings and restarts the deterministic
// sequence of choices.
func (r *Registry) SetFaults(f Faults) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = f
	r.faultSeq = 0
}

// fault is what happens to one request.
type fault int

const (
	faultNone fault = iota
	faultError500
	faultError503
	faultDrop
)

// decide draws the next choice of the sequence: the fault to inject before
// handling, whether a DELETE's response is lost, and the latency to add.
func (r *Registry) decide(isDelete bool) (f fault, lost bool, latency time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fs := r.faults
	latency = fs.Latency
	if fs.ErrorRate <= 0 && fs.DropRate <= 0 && fs.LostResponseRate <= 0 {
		return faultNone, false, latency
	}
	seq := r.faultSeq
	r.faultSeq++
	u := unit(fs.Seed, seq, 1)
	switch {
	case u < fs.ErrorRate:
		f = faultError500
		if unit(fs.Seed, seq, 3) < 0.5 {
			f = faultError503
		}
	case u < fs.ErrorRate+fs.DropRate:
		f = faultDrop
	}
	if f == faultNone && isDelete && unit(fs.Seed, seq, 2) < fs.LostResponseRate {
		lost = true
	}
	if f != faultNone || lost {
		r.stats.Faults++
	}
	return f, lost, latency
}

// unit maps (seed, seq, salt) to a uniform float in [0, 1) with splitmix64.
func unit(seed int64, seq uint64, salt uint64) float64 {
	x := uint64(seed) ^ (seq * 0x9e3779b97f4a7c15) ^ (salt * 0xbf58476d1ce4e5b9)
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}
