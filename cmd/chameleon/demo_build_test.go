//go:build !js

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// The browser tests build the wasm runtime themselves, as `make wasm`
// does, so that `go test` (and `make test` from a fresh clone) needs no
// earlier step; `chameleon demo` itself only serves a runtime `make wasm`
// has built.

// sourceRoot finds Chameleon's module root at or above the working directory.
func sourceRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			return dir, strings.Contains(string(b), "module github.com/chameleon-llm/chameleon\n")
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", false
		}
		dir = up
	}
}

// buildWasm compiles package wasm for GOOS=js GOARCH=wasm into
// out/chameleon.wasm and copies the toolchain's wasm_exec.js beside it, as
// the Makefile's wasm target does.
func buildWasm(ctx context.Context, goBin, root, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", filepath.Join(out, "chameleon.wasm"), "./wasm")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the wasm runtime: %v\n%s", err, b)
	}
	gr, err := exec.CommandContext(ctx, goBin, "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	src := filepath.Join(strings.TrimSpace(string(gr)), "lib", "wasm", "wasm_exec.js")
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("the Go toolchain's wasm_exec.js: %w", err)
	}
	return os.WriteFile(filepath.Join(out, "wasm_exec.js"), b, 0o644)
}

// goTool is the go command of the toolchain running the test.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
