// Command wgslgen writes the generated WGSL kernels of package wgsl (see
// wgsl/internal/gen) into the current directory and removes generated
// files whose source is gone. Run it with `go generate ./wgsl`.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/chameleon-llm/chameleon/wgsl/internal/gen"
)

func main() {
	if err := run("."); err != nil {
		fmt.Fprintln(os.Stderr, "wgslgen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	files, err := gen.Files(dir)
	if err != nil {
		return err
	}
	stale, err := gen.Stale(dir, files)
	if err != nil {
		return err
	}
	for _, name := range stale {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		if old, err := os.ReadFile(path); err == nil && string(old) == f.Text {
			continue
		}
		if err := os.WriteFile(path, []byte(f.Text), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("wgslgen: %d generated kernels, %d stale removed\n", len(files), len(stale))
	return nil
}
