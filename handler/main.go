// Command handler is acrpurge's one binary: the Azure Functions custom
// handler (serve, the default), a one-shot purge CLI (purge), the whole
// system on one machine (local) and the policy tools (policy convert|check).
// It only parses the subcommand and hands over to internal/; see README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/migrate"
	"github.com/acrpurge/acrpurge/internal/purgecli"
	"github.com/acrpurge/acrpurge/internal/testbed/localstack"
)

const usage = `acrpurge handler — keeps Azure Container Registry repositories clean.

Usage:
  handler [serve]            run as the Azure Functions custom handler (the default)
  handler purge [flags]      purge a registry once from the command line (dry run by default);
                             "handler purge -h" lists the flags
  handler local [flags]      the whole system on this machine, no Azure needed (make run);
                             "handler local -h" lists the flags
  handler policy convert     turn acr purge commands or an ACR Task file into a policy
  handler policy check       validate a policy and describe it in words;
                             "handler policy -h" tells more
  handler help               show this text
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		logger := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
		if err := app.Serve(ctx, os.Getenv, logger); err != nil {
			logger.Error("handler stopped", "error", err)
			fmt.Fprintln(stderr, "handler serve:", err)
			return 1
		}
		return 0
	case "purge":
		return purgecli.Run(ctx, args, stdout, stderr, os.Getenv)
	case "local":
		return localstack.Run(ctx, args, stdout, stderr, os.Getenv)
	case "policy":
		return migrate.Run(ctx, args, os.Stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "handler: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
