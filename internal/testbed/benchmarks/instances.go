package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// InstancesOptions configure Instances. Zero fields take the defaults of
// DefaultInstances.
type InstancesOptions struct {
	// Instances is the number of `handler serve` processes.
	Instances int
	// PerMinute is PURGE_DELETES_PER_MINUTE, the budget of the registry,
	// shared by every instance.
	PerMinute int
	// RegistryLimit is the registry's write operations per minute, above
	// PerMinute so that the budget is what binds.
	RegistryLimit int
	// Repositories × OldTags is each instance's work; it must keep it busy
	// for all of Run.
	Repositories, OldTags int
	// Latency is added to every data-plane request.
	Latency time.Duration
	// Run is how long the instances are driven; the first Warmup of it is
	// left out of the rates.
	Run, Warmup time.Duration
	// MaxConcurrentCalls is the Worker invocations in flight per instance
	// (host.json serviceBus.maxConcurrentCalls).
	MaxConcurrentCalls int
	// TableConnString is the Table Storage (Azurite) account of the
	// checkpoints and of the shared budget. Required.
	TableConnString string `json:"-"`
	// Handler is a built handler binary; empty builds one into a temporary
	// folder (go build, from the module this code is in).
	Handler string
}

// DefaultInstances is the multi-instance scenario of issue 8: four
// processes, a registry-wide budget of 1,200 deletes per minute, a
// registry admitting 5,000 writes per minute, 20 ms latency, 26 s of
// which the first 4 are left out.
func DefaultInstances() InstancesOptions {
	return InstancesOptions{
		Instances: 4, PerMinute: 1200, RegistryLimit: 5000, Repositories: 40, OldTags: 10,
		Latency: 20 * time.Millisecond, Run: 26 * time.Second, Warmup: 4 * time.Second, MaxConcurrentCalls: 4,
	}
}

func (o *InstancesOptions) defaults() {
	d := DefaultInstances()
	if o.Instances < 1 {
		o.Instances = d.Instances
	}
	if o.PerMinute < 1 {
		o.PerMinute = d.PerMinute
	}
	if o.RegistryLimit < 1 {
		o.RegistryLimit = d.RegistryLimit
	}
	if o.Repositories < 1 {
		o.Repositories = d.Repositories
	}
	if o.OldTags < 1 {
		o.OldTags = d.OldTags
	}
	if o.Latency < 0 {
		o.Latency = 0
	}
	if o.Run <= 0 {
		o.Run = d.Run
	}
	if o.Warmup <= 0 || o.Warmup >= o.Run {
		o.Warmup = o.Run / 6
	}
	if o.MaxConcurrentCalls < 1 {
		o.MaxConcurrentCalls = d.MaxConcurrentCalls
	}
}

// InstancesFigures are the results of Instances.
type InstancesFigures struct {
	Options InstancesOptions `json:"options"`
	// PerInstance is the deletes of each instance between Warmup and Run.
	PerInstance []int `json:"perInstance"`
	// PerMinute is their combined rate; TotalPercent = 100 × PerMinute /
	// budget; MinSharePercent = 100 × the smallest instance's deletes /
	// all of them.
	PerMinute       float64 `json:"perMinute"`
	TotalPercent    float64 `json:"totalPercent"`
	MinSharePercent float64 `json:"minSharePercent"`
	// Throttled is the 429s the registry answered.
	Throttled int `json:"throttled"`
	// Fallbacks is the "shared delete budget unreachable" warnings the
	// instances logged (goal 0: Azurite was up).
	Fallbacks int `json:"fallbacks"`
	// Deliveries is the Worker invocations, Failed those answered non-2xx.
	Deliveries int `json:"deliveries"`
	Failed     int `json:"failed"`
	// Build is the time `go build` of the handler took (not part of Run).
	Build time.Duration `json:"buildNs"`
}

// instanceProcess is one running `handler serve`.
type instanceProcess struct {
	cmd       *exec.Cmd
	base      string
	fallbacks atomic.Int64
	tail      *tailBuffer
}

// Instances runs o.Instances separate `handler serve` processes — the
// Worker over the custom-handler protocol, signing in through the
// emulator's managed-identity endpoint — against one emulator and one
// Azurite table, drives each with its own portal messages, and measures
// the combined deletes per minute and each instance's share from the
// registry's own records.
func Instances(ctx context.Context, o InstancesOptions) (InstancesFigures, error) {
	o.defaults()
	f := InstancesFigures{Options: o}
	if o.TableConnString == "" {
		return f, errors.New("instances: a Table Storage account is needed (make bench starts Azurite)")
	}
	bin := o.Handler
	if bin == "" {
		dir, err := os.MkdirTemp("", "acrpurge-bench-")
		if err != nil {
			return f, err
		}
		defer os.RemoveAll(dir)
		t0 := time.Now()
		if bin, err = buildHandler(ctx, dir); err != nil {
			return f, err
		}
		f.Build = time.Since(t0)
	}

	reg := acremu.New(acremu.Options{})
	if err := reg.Start(); err != nil {
		return f, fmt.Errorf("instances: start the registry emulator: %w", err)
	}
	defer reg.Close()
	const clientID = "5e1f0000-0000-4000-8000-00000000be4c"
	cred := reg.AddIdentity(acremu.Identity{Name: "acrpurge-mi", Grants: []acremu.Grant{{}}})
	idp, err := reg.StartIdentityEndpoint(map[string]*acremu.Credential{clientID: cred})
	if err != nil {
		return f, err
	}
	defer idp.Close()
	repos := make([][]string, o.Instances)
	for i := range repos {
		repos[i] = seedOldTagsNamed(reg, fmt.Sprintf("bench/i%d-r", i), o.Repositories, o.OldTags, 0)
	}
	tbl, err := newTable(ctx, o.TableConnString)
	if err != nil {
		return f, fmt.Errorf("instances: %w", err)
	}
	defer tbl.drop()

	procs := make([]*instanceProcess, o.Instances)
	defer func() {
		for _, p := range procs {
			if p != nil {
				p.stop()
			}
		}
	}()
	for i := range procs {
		env := append(idp.Env(clientID),
			config.LoginServer+"="+reg.URL(),
			config.Policy+"="+oldTagsPolicy,
			// Never used: no message of this scenario sends one (no
			// continuation, no re-fan-out). The client connects lazily.
			config.ServiceBusConnString+"=Endpoint=sb://127.0.0.1/;SharedAccessKeyName=bench;SharedAccessKey=bm90LWEta2V5",
			config.CheckpointConnString+"="+o.TableConnString,
			config.CheckpointTable+"="+tbl.opts.Table,
			config.DeletesPerMinute+"="+strconv.Itoa(o.PerMinute),
			config.MaxInstances+"="+strconv.Itoa(o.Instances),
			config.BatchSize+"=10",
			config.MessageDeadline+"=5m",
		)
		if procs[i], err = startInstance(ctx, bin, env); err != nil {
			return f, fmt.Errorf("instances: instance %d: %w", i, err)
		}
	}
	reg.SetLimits(acremu.Limits{RegistryWrites: o.RegistryLimit, RegistryWindow: time.Minute})
	reg.SetFaults(acremu.Faults{Latency: o.Latency})
	reg.ResetStats()
	reg.ResetDeletes()

	start := reg.Now()
	runCtx, cancel := context.WithTimeout(ctx, o.Run)
	defer cancel()
	var wg sync.WaitGroup
	var deliveries, failed atomic.Int64
	for i, p := range procs {
		msgs := make(chan []byte, len(repos[i]))
		for chunk := range slices.Chunk(repos[i], 10) {
			b, _ := json.Marshal(map[string][]string{"repositories": chunk})
			msgs <- b
		}
		close(msgs)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.MaxConcurrentCalls}}
		for slot := range o.MaxConcurrentCalls {
			wg.Go(func() {
				n := 0
				for body := range msgs {
					n++
					id := fmt.Sprintf("bench-i%d-s%d-m%d", i, slot, n)
					for delivery := 1; runCtx.Err() == nil; delivery++ {
						deliveries.Add(1)
						req := funchost.ServiceBusRequest("msg", body, funchost.BodyDoubleString, funchost.ServiceBusMeta{
							MessageID: id, DeliveryCount: delivery, EnqueuedTime: time.Now(), DeliveryCountAsString: true,
						})
						_, status, err := funchost.Invoke(runCtx, client, p.base, "Worker", req)
						if err == nil && status >= 200 && status < 300 {
							break
						}
						if runCtx.Err() == nil {
							failed.Add(1)
						}
					}
				}
			})
		}
	}
	<-runCtx.Done()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return f, err
	}

	from, to := start.Add(o.Warmup), start.Add(o.Run)
	f.PerInstance = make([]int, o.Instances)
	total := 0
	for _, rec := range reg.Deletes() {
		if rec.At.Before(from) || !rec.At.Before(to) {
			continue
		}
		var i int
		if _, err := fmt.Sscanf(rec.Repo, "bench/i%d-r", &i); err == nil && i >= 0 && i < o.Instances {
			f.PerInstance[i]++
			total++
		}
	}
	f.PerMinute = float64(total) / to.Sub(from).Minutes()
	f.TotalPercent = 100 * f.PerMinute / float64(o.PerMinute)
	if total > 0 {
		f.MinSharePercent = 100 * float64(slices.Min(f.PerInstance)) / float64(total)
	}
	f.Throttled = reg.Stats().Throttled
	f.Deliveries, f.Failed = int(deliveries.Load()), int(failed.Load())
	for i, p := range procs {
		f.Fallbacks += int(p.fallbacks.Load())
		if f.PerInstance[i] == 0 {
			return f, fmt.Errorf("instances: instance %d deleted nothing; its last output: %s", i, p.tail.String())
		}
	}
	return f, nil
}

// buildHandler builds the handler binary into dir.
func buildHandler(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "handler")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/acrpurge/acrpurge/handler")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build the handler: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// startInstance runs `bin serve` with env (and nothing else of this
// process's environment) on a free port, and waits until it answers.
func startInstance(ctx context.Context, bin string, env []string) (*instanceProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	env = append(env, config.HandlerPort+"="+strconv.Itoa(port))
	p := &instanceProcess{base: "http://127.0.0.1:" + strconv.Itoa(port), tail: &tailBuffer{max: 4096}}
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = env
	p.cmd.Stderr = p.tail
	p.cmd.Stdout = &lineWriter{line: func(line string) {
		if strings.Contains(line, "shared delete budget unreachable") {
			p.fallbacks.Add(1)
		}
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
			_, _ = p.tail.Write([]byte(line + "\n"))
		}
	}}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := funchost.WaitReady(wctx, nil, p.base); err != nil {
		p.stop()
		return nil, fmt.Errorf("the handler did not come up: %w; its output: %s", err, p.tail.String())
	}
	return p, nil
}

// stop ends the process it started: SIGTERM (a graceful shutdown), then
// SIGKILL after 10 s.
func (p *instanceProcess) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// freePort returns a loopback port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// lineWriter calls line for every complete line written to it (the
// process's JSON logs); lines are cut at 64 KiB.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	line func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > 64<<10 {
				w.line(string(w.buf))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

var _ io.Writer = (*tailBuffer)(nil)
