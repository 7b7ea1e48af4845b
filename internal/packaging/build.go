package packaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// Names and locations fixed by the layout (DESIGN.md "Layout").
const (
	// BinaryName is the name of the handler binary at the zip root. host.json's
	// customHandler.description.defaultExecutablePath must name it.
	BinaryName = "handler"
	// HostFile is the host configuration at the repository and zip root.
	HostFile = "host.json"
	// FunctionsDir holds one folder per function in the repository; in the
	// zip those folders sit at the root.
	FunctionsDir = "functions"
	// FunctionFile is the binding file inside each function folder.
	FunctionFile = "function.json"
	// MainPackage is the Go package of the handler, relative to the root.
	MainPackage = "./handler"
	// DefaultZipPath is where `make package` writes the zip, relative to the root.
	DefaultZipPath = "dist/acrpurge.zip"
)

// Options configure BuildWith. Root and Out are required.
type Options struct {
	// Root is the module root holding host.json, functions/ and the handler.
	Root string
	// Out is the zip to write; its directory is created if missing.
	Out string
	// Go is the go command; "" means "go" from PATH.
	Go string
	// MainPackage is the package to compile, relative to Root; "" means
	// MainPackage (./handler).
	MainPackage string
	// Binary, when set, is a handler binary built elsewhere: it is packaged
	// as is and nothing is compiled.
	Binary string
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

// Build compiles the handler of the module at root for linux/amd64 and
// writes the deployment zip to outZip.
func Build(ctx context.Context, root, outZip string) error {
	return BuildWith(ctx, Options{Root: root, Out: outZip})
}

// BuildWith is Build with every knob exposed.
func BuildWith(ctx context.Context, o Options) error {
	if o.Root == "" || o.Out == "" {
		return errors.New("packaging: Root and Out are required")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	binary := o.Binary
	if binary == "" {
		tmp, err := os.MkdirTemp("", "acrpurge-package-")
		if err != nil {
			return fmt.Errorf("packaging: temporary directory: %w", err)
		}
		defer os.RemoveAll(tmp)
		binary = filepath.Join(tmp, BinaryName)
		pkg := o.MainPackage
		if pkg == "" {
			pkg = MainPackage
		}
		log.InfoContext(ctx, "compiling handler", slog.String("package", pkg), slog.String("goos", TargetOS), slog.String("goarch", TargetArch))
		if err := CompileHandler(ctx, o.Go, o.Root, pkg, binary); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("packaging: %w", err)
	}
	if err := WriteZip(o.Root, binary, o.Out); err != nil {
		return err
	}
	log.InfoContext(ctx, "package written", slog.String("zip", o.Out))
	return nil
}
