package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// EnvScriptRoot is set by the Functions host to the app root (the folder
// holding host.json); an "@file" PURGE_POLICY is relative to it. Without it
// the executable's folder is the app root.
const EnvScriptRoot = "AzureWebJobsScriptRoot"

// ShutdownTimeout bounds the graceful shutdown: invocations in flight are
// cancelled when Serve's context ends, checkpoint what they did and return.
const ShutdownTimeout = 30 * time.Second

// Serve is `handler serve`: it loads and validates the configuration once
// (Service Bus, checkpoint storage and FUNCTIONS_CUSTOMHANDLER_PORT are
// required), loads the policy, builds the credential (a managed identity
// with AZURE_CLIENT_ID when set, else DefaultAzureCredential), the Service
// Bus sender, the Table Storage checkpoint store and the registry-wide
// delete budget shared through the same table, and serves the
// custom-handler protocol on 127.0.0.1:FUNCTIONS_CUSTOMHANDLER_PORT until
// ctx ends.
func Serve(ctx context.Context, getenv func(string) string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := config.Load(getenv, config.Requirement{ServiceBus: true, Checkpoint: true, Port: true})
	if err != nil {
		return err
	}
	pol, err := LoadPolicy(cfg, getenv)
	if err != nil {
		return err
	}
	cred, err := Credential(cfg)
	if err != nil {
		return err
	}
	// The identity-based namespace wins when both are set.
	sbConn := cfg.ServiceBusConnString.Reveal()
	if cfg.ServiceBusNamespace != "" {
		sbConn = ""
	}
	sbClient, err := queue.NewServiceBusClient(sbConn, cfg.ServiceBusNamespace, cred)
	if err != nil {
		return fmt.Errorf("service bus (%s / %s): %w", config.ServiceBusNamespace, config.ServiceBusConnString, err)
	}
	defer func() { _ = sbClient.Close(context.WithoutCancel(ctx)) }()
	sender, err := queue.NewServiceBusSender(sbClient, cfg.Queue, logger)
	if err != nil {
		return fmt.Errorf("service bus queue %s (%s): %w", cfg.Queue, config.Queue, err)
	}
	defer func() { _ = sender.Close(context.WithoutCancel(ctx)) }()
	// No storage call before the port is open: the host gives a custom
	// handler 60 s to answer GET /, and right after a deployment (role
	// assignments still propagating) the table may hang or refuse for a
	// while. The table is checked and created in the background; until
	// then invocations fail with a retryable error.
	store, err := checkpoint.OpenTable(checkpointOptions(cfg, cred, logger))
	if err != nil {
		return fmt.Errorf("checkpoint storage (%s / %s): %w", config.CheckpointURI, config.CheckpointConnString, err)
	}
	deletes, err := NewSharedBudget(cfg, checkpointOptions(cfg, cred, logger), logger)
	if err != nil {
		return err
	}
	a, err := New(cfg, pol, Deps{Credential: cred, Sender: sender, Store: store, Logger: logger, Deletes: deletes})
	if err != nil {
		return err
	}
	logger.Info("acrpurge handler starting", "registry", cfg.Registry.String(), "queue", cfg.Queue,
		"table", store.Name(), "dryRun", cfg.DryRun, "batchSize", cfg.BatchSize, "schedule", cfg.Schedule.String(),
		"deletesPerMinute", cfg.DeletesPerMinute, "maxInstances", cfg.MaxInstances, "policy", pol.Describe())
	a.ready = newReadiness()
	go a.ready.run(ctx, logger, func(ctx context.Context) error {
		if err := store.Ensure(ctx); err != nil {
			return fmt.Errorf("checkpoint table %s (%s / %s): %w", store.Name(), config.CheckpointURI, config.CheckpointConnString, err)
		}
		return nil
	})
	return a.ListenAndServe(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)))
}

// ListenAndServe serves the app's functions on addr until ctx ends, then
// cancels the invocations in flight (so they checkpoint and return) and
// shuts down within ShutdownTimeout.
func (a *App) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s (%s): %w", addr, config.HandlerPort, err)
	}
	invocations, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	srv := &http.Server{
		Handler:           a.HTTPHandler(),
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return invocations },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	a.log.Info("serving the custom-handler protocol", "addr", ln.Addr().String())
	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.log.Info("shutting down: cancelling invocations in flight")
	cancel()
	sctx, stop := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer stop()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// LoadPolicy loads PURGE_POLICY; an "@file" is relative to the app root
// (AzureWebJobsScriptRoot, else the executable's folder).
func LoadPolicy(cfg *config.Config, getenv func(string) string) (*policy.Policy, error) {
	root := getenv(EnvScriptRoot)
	if root == "" {
		if exe, err := os.Executable(); err == nil {
			root = filepath.Dir(exe)
		}
	}
	pol, err := policy.Load(cfg.PolicySetting, root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.Policy, err)
	}
	return pol, nil
}

// Credential returns the AAD credential: the user-assigned managed identity
// AZURE_CLIENT_ID when set, else DefaultAzureCredential (which also covers a
// system-assigned identity and developer logins).
func Credential(cfg *config.Config) (azcore.TokenCredential, error) {
	if cfg.ClientID != "" {
		c, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
			ID: azidentity.ClientID(cfg.ClientID),
		})
		if err != nil {
			return nil, fmt.Errorf("managed identity %s (%s): %w", cfg.ClientID, config.ClientID, err)
		}
		return c, nil
	}
	c, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("default Azure credential: %w", err)
	}
	return c, nil
}

func checkpointOptions(cfg *config.Config, cred azcore.TokenCredential, logger *slog.Logger) checkpoint.TableOptions {
	o := checkpoint.TableOptions{Table: cfg.CheckpointTable, Logger: logger}
	if cfg.CheckpointURI != "" {
		o.ServiceURL, o.Credential = cfg.CheckpointURI, cred
	} else {
		o.ConnectionString = cfg.CheckpointConnString.Reveal()
	}
	return o
}
