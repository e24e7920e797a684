package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// tunnelBinaries are the node-side binaries the demo runs as processes.
var tunnelBinaries = []string{"tunnel-server", "tunnel-agent"}

// binaries says where the demo's child binaries are and how they got there.
type binaries struct {
	Dir string
	// Source says where they came from, for the user.
	Source string
}

func (b binaries) path(name string) string { return filepath.Join(b.Dir, name) }

// findBinaries picks the directory of tunnel-server and tunnel-agent:
// --bin-dir when given, else the directory of the running executable (bin/
// after `make build`), else a fresh build into buildDir, announced with
// progress.
func findBinaries(ctx context.Context, binDir, buildDir string, progress func(string)) (binaries, error) {
	if binDir != "" {
		if err := checkBinaries(binDir); err != nil {
			return binaries{}, fmt.Errorf("--bin-dir %s: %w (run `make build`)", binDir, err)
		}
		return binaries{Dir: binDir, Source: "from --bin-dir"}, nil
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			dir := filepath.Dir(exe)
			if checkBinaries(dir) == nil {
				return binaries{Dir: dir, Source: "next to " + filepath.Base(exe)}, nil
			}
		}
	}
	root, err := repoRoot()
	if err != nil {
		return binaries{}, fmt.Errorf("no tunnel-server and tunnel-agent next to the demo's executable, and none can be built (pass --bin-dir): %w", err)
	}
	progress(fmt.Sprintf("Building %s into %s (pass --bin-dir, or run bin/edgeunit-demo after `make build`, to skip this)", strings.Join(tunnelBinaries, " and "), buildDir))
	if err := BuildBinaries(ctx, root, buildDir); err != nil {
		return binaries{}, err
	}
	return binaries{Dir: buildDir, Source: "built from " + root}, nil
}

// TestBinDirEnv names a directory of prebuilt tunnel-server and
// tunnel-agent binaries for tests that run demos.
const TestBinDirEnv = "EDGEUNIT_TEST_BIN_DIR"

// TestBinaries returns the directory of the binaries tests run demos with
// (Options.BinDir): $EDGEUNIT_TEST_BIN_DIR when set, else a temporary
// directory they are built into from the repository the working directory
// is in (within 5 minutes), once per test binary; cleanup removes it.
func TestBinaries() (dir string, cleanup func(), err error) {
	if dir := os.Getenv(TestBinDirEnv); dir != "" {
		return dir, func() {}, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", nil, err
	}
	if dir, err = os.MkdirTemp("", "edgeunit-demo-test-bin-"); err != nil {
		return "", nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := BuildBinaries(ctx, root, dir); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building the tunnel binaries (or set %s): %w", TestBinDirEnv, err)
	}
	return dir, cleanup, nil
}

// BuildBinaries builds the binaries the demo runs (tunnel-server,
// tunnel-agent) from the repository at root into dir, with `go build`.
// Tests use it to build them once for several demos (Options.BinDir).
func BuildBinaries(ctx context.Context, root, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, b := range tunnelBinaries {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("building %s (go %s in %s): %w: %s", strings.Join(tunnelBinaries, " and "), strings.Join(args, " "), root, err, strings.TrimSpace(string(out)))
	}
	return checkBinaries(dir)
}

func checkBinaries(dir string) error {
	var errs []error
	for _, b := range tunnelBinaries {
		fi, err := os.Stat(filepath.Join(dir, b))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("no %s in %s", b, dir))
		case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
			errs = append(errs, fmt.Errorf("%s is not executable", filepath.Join(dir, b)))
		}
	}
	return errors.Join(errs...)
}
