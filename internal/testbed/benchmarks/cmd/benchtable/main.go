// Command benchtable runs every performance scenario of acrpurge once
// (internal/testbed/benchmarks) and prints one table: each figure beside its goal
// and beside a strictly sequential baseline measured in the same run, then
// notes on the machine and on how each figure was measured. `make bench`
// runs it under .ci/azurite, so the Table-store fan-out runs too; without
// AZURITE_TABLE_ENDPOINT that row says it was skipped.
//
// Usage:
//
//	benchtable [-json] [-only plan,throughput,errors,governance,fanout,localstack]
//
// With -json and -only governance alone, it prints one JSON object holding
// exactly issue 8's figures (benchmarks.GovernanceFigures), nothing else.
//
// The planner's heap is measured in a fresh subprocess (this command run
// again with -child), so that no other scenario's garbage is counted.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
	"github.com/acrpurge/acrpurge/internal/testbed/benchmarks"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// Children: scenarios run in a subprocess, printing their figures as JSON.
const (
	childPlan    = "plan"
	childListing = "plan-listing"
)

// run is the command; it returns the exit code: 0 every selected scenario
// ran, 1 one failed, 2 bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("benchtable", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the figures, rows and notes as JSON instead of the table")
	only := fs.String("only", "", "comma-separated `scenarios` to run (default all): "+strings.Join(benchmarks.Scenarios, ","))
	child := fs.String("child", "", "internal: run one scenario in this process and print its figures as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "benchtable: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *child != "" {
		return runChild(ctx, *child, stdout, stderr)
	}
	selected, err := parseOnly(*only)
	if err != nil {
		fmt.Fprintf(stderr, "benchtable: -only: %v\n", err)
		return 2
	}

	res := &benchmarks.Results{Machine: benchmarks.ThisMachine(), Failed: map[string]string{}}
	start := time.Now()
	for _, name := range benchmarks.Scenarios {
		if !selected[name] {
			continue
		}
		fmt.Fprintf(stderr, "benchtable: %-10s ", name)
		t0 := time.Now()
		err := runScenario(ctx, name, res, getenv)
		if err != nil {
			res.Failed[name] = err.Error()
			fmt.Fprintf(stderr, "FAILED after %s: %v\n", time.Since(t0).Round(100*time.Millisecond), err)
		} else {
			fmt.Fprintf(stderr, "%s\n", time.Since(t0).Round(100*time.Millisecond))
		}
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "benchtable: interrupted")
			return 1
		}
	}
	res.Elapsed = time.Since(start)
	res.Machine.LoadAfter = benchmarks.LoadAverage()

	if *asJSON && len(selected) == 1 && selected[benchmarks.ScenarioGovernance] {
		// Issue 8's figures alone, one object.
		var figs any = map[string]string{"error": res.Failed[benchmarks.ScenarioGovernance]}
		if g := res.Governance; g != nil {
			figs = g.Figures
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(figs); err != nil {
			fmt.Fprintf(stderr, "benchtable: %v\n", err)
			return 1
		}
	} else if *asJSON {
		out := struct {
			*benchmarks.Results
			Rows  []benchmarks.Row `json:"rows"`
			Notes []string         `json:"notes"`
		}{res, res.Rows(), res.Notes()}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "benchtable: %v\n", err)
			return 1
		}
	} else if err := writeText(stdout, res); err != nil {
		fmt.Fprintf(stderr, "benchtable: %v\n", err)
		return 1
	}
	if len(res.Failed) > 0 {
		return 1
	}
	return 0
}

// parseOnly reads -only; empty selects every scenario.
func parseOnly(only string) (map[string]bool, error) {
	sel := map[string]bool{}
	if strings.TrimSpace(only) == "" {
		for _, s := range benchmarks.Scenarios {
			sel[s] = true
		}
		return sel, nil
	}
	for _, s := range strings.Split(only, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(benchmarks.Scenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q (want some of %s)", s, strings.Join(benchmarks.Scenarios, ","))
		}
		sel[s] = true
	}
	return sel, nil
}

// runScenario runs one scenario into res.
func runScenario(ctx context.Context, name string, res *benchmarks.Results, getenv func(string) string) error {
	var err error
	switch name {
	case benchmarks.ScenarioPlan:
		var p benchmarks.PlanFigures
		var l benchmarks.ListingFigures
		if err = inChild(ctx, childPlan, &p); err != nil {
			return err
		}
		res.Plan = &p
		if err = inChild(ctx, childListing, &l); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		res.Listing = &l
	case benchmarks.ScenarioThroughput:
		var f benchmarks.ThroughputFigures
		f, err = benchmarks.Throughput(ctx, benchmarks.DefaultThroughput())
		res.Throughput = &f
	case benchmarks.ScenarioErrors:
		var f benchmarks.ThroughputFigures
		f, err = benchmarks.Throughput(ctx, benchmarks.ErrorsScenario())
		res.Errors = &f
	case benchmarks.ScenarioGovernance:
		o := benchmarks.DefaultGovernance()
		ep := strings.TrimSpace(getenv(azurite.EnvEndpoint))
		if ep == "" {
			return fmt.Errorf("the registry-wide budget is shared through Table Storage: %s not set (make bench starts Azurite)", azurite.EnvEndpoint)
		}
		o.TableConnString = azurite.ConnString(ep)
		var g benchmarks.Governance
		g, err = benchmarks.RunGovernance(ctx, o)
		res.Governance = &g
	case benchmarks.ScenarioFanOut:
		o := benchmarks.DefaultFanOut()
		if ep := strings.TrimSpace(getenv(azurite.EnvEndpoint)); ep != "" {
			o.TableConnString = azurite.ConnString(ep)
		} else {
			res.TableSkipped = azurite.EnvEndpoint + " not set (make bench starts Azurite)"
		}
		var f benchmarks.FanOutFigures
		f, err = benchmarks.FanOut(ctx, o)
		res.FanOut = &f
	case benchmarks.ScenarioLocalStack:
		var f benchmarks.LocalStackFigures
		f, err = benchmarks.LocalStack(ctx, benchmarks.DefaultLocalStack())
		res.LocalStack = &f
	default:
		return fmt.Errorf("unknown scenario %q", name)
	}
	if err != nil {
		// A failed scenario's figures are partial: show the failure only.
		switch name {
		case benchmarks.ScenarioThroughput:
			res.Throughput = nil
		case benchmarks.ScenarioErrors:
			res.Errors = nil
		case benchmarks.ScenarioGovernance:
			res.Governance = nil
		case benchmarks.ScenarioFanOut:
			res.FanOut = nil
		case benchmarks.ScenarioLocalStack:
			res.LocalStack = nil
		}
	}
	return err
}

// inChild runs this command again with -child name and decodes the JSON it
// prints into v.
func inChild(ctx context.Context, name string, v any) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program to run %s in a subprocess: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, exe, "-child", name)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("subprocess %s: %w: %s", name, err, strings.TrimSpace(errOut.String()))
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		return fmt.Errorf("subprocess %s: its figures: %w", name, err)
	}
	return nil
}

// runChild is the subprocess side of inChild.
func runChild(ctx context.Context, name string, stdout, stderr io.Writer) int {
	var v any
	var err error
	switch name {
	case childPlan:
		v, err = benchmarks.PlanHuge(ctx, benchmarks.DefaultPlan())
	case childListing:
		v, err = benchmarks.PlanListing(ctx, benchmarks.DefaultPlan())
	default:
		err = fmt.Errorf("unknown child %q", name)
	}
	if err == nil {
		err = json.NewEncoder(stdout).Encode(v)
	}
	if err != nil {
		fmt.Fprintf(stderr, "benchtable -child %s: %v\n", name, err)
		return 1
	}
	return 0
}

// writeText prints the table and the notes.
func writeText(w io.Writer, res *benchmarks.Results) error {
	if err := benchmarks.WriteTable(w, res.Rows()); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("\nNotes\n")
	for _, n := range res.Notes() {
		b.WriteString(wrap("- "+n, 100, "  "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wrap breaks s into lines of at most width runes at spaces, indenting the
// continuation lines.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(s) {
		n := len([]rune(word))
		switch {
		case i == 0:
		case line+1+n > width:
			b.WriteString("\n" + indent)
			line = len(indent)
		default:
			b.WriteString(" ")
			line++
		}
		b.WriteString(word)
		line += n
	}
	return b.String() + "\n"
}
