package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIData runs `data build` (the quotes domain, from a fake fortunes
// tree) and `data stats --verify` through dataCmd in process, so it does
// not depend on how main registers the command.
func TestCLIData(t *testing.T) {
	src := t.TempDir()
	for _, pkg := range []string{"fortunes", "fortunes-min"} {
		dir := filepath.Join(src, pkg, "usr/share/games/fortunes")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		text := "A penny saved is a penny earned, says " + pkg + ".\n%\nMeasure twice and cut once, says " + pkg + ".\n"
		if err := os.WriteFile(filepath.Join(dir, "wisdom"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "corpus")
	run := func(args ...string) (string, string) {
		t.Helper()
		c := dataCmd()
		var stdout, stderr bytes.Buffer
		c.SetOut(&stdout)
		c.SetErr(&stderr)
		c.SetArgs(args)
		if err := c.Execute(); err != nil {
			t.Fatalf("data %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	_, progress := run("build", "--src", src, "--out", out, "--domains", "quotes")
	if !strings.Contains(progress, "quotes") || !strings.Contains(progress, "wrote 4 documents") {
		t.Errorf("build progress:\n%s", progress)
	}
	table, _ := run("stats", "--corpus", out, "--verify")
	for _, want := range []string{"quotes", "train", "validation", "test", "total", "verify: every file matches"} {
		if !strings.Contains(table, want) {
			t.Errorf("stats output lacks %q:\n%s", want, table)
		}
	}
}
