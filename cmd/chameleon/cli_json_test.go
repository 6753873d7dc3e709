package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

var snakeKey = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// checkSnake fails on any object key in doc that is not snake_case, and
// returns the decoded document.
func checkSnake(t *testing.T, what, doc string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, doc)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if !snakeKey.MatchString(k) {
					t.Errorf("%s: key %s.%s is not snake_case", what, path, k)
				}
				walk(path+"."+k, e)
			}
		case []any:
			for _, e := range x {
				walk(path+"[]", e)
			}
		}
	}
	walk("", v)
	return v
}

// Every command that prints results has --json, with snake_case keys.
func TestCLIJSON(t *testing.T) {
	dir := tinyModel(t)
	ad := randomHyperFile(t, dir, 1, 0)
	pf := filepath.Join(t.TempDir(), "p.txt")
	os.WriteFile(pf, []byte("a\tThe cat sat on the mat.\nb\tfunc main() { fmt.Println(1) }\n"), 0o644)
	data := filepath.Join(t.TempDir(), "data.txt")
	os.WriteFile(data, []byte(strings.Repeat("The cat sat on the mat.\n", 8)), 0o644)
	for _, args := range [][]string{
		{"version", "--json"},
		{"devices", "--json"},
		{"tokenize", "--json", "Hello world"},
		{"inspect", "--json", dir},
		{"generate", "--json", "--model", dir, "--max-tokens", "2", "--adapter", ad, "one", "two"},
		{"perplexity", "--json", "--model", dir, "--data", data, "--context", "32"},
		{"run", "--json", "--model", dir, "--adapter", ad, "--prompts", pf, "--max-tokens", "2", "--clusters", "2"},
	} {
		out := mustRun(t, "", args...)
		v := checkSnake(t, args[0], out)
		m, _ := v.(map[string]any)
		switch args[0] {
		case "devices":
			if l, _ := v.([]any); len(l) == 0 || l[0].(map[string]any)["limits"].(map[string]any)["max_storage_buffer_binding_size"] == nil {
				t.Errorf("devices: %s", out)
			}
		case "generate":
			g, _ := m["generations"].([]any)
			if len(g) != 2 || g[1].(map[string]any)["cluster"] == nil || m["tokens"].(float64) < 2 {
				t.Errorf("generate: %s", out)
			}
		case "run":
			p, _ := m["prompts"].([]any)
			if len(p) != 2 || !(p[0].(map[string]any)["adapted_perplexity"].(float64) > 1) ||
				!(p[0].(map[string]any)["cached_perplexity"].(float64) > 1) || len(m["cache_pools"].([]any)) == 0 {
				t.Errorf("run: %s", out)
			}
		case "inspect":
			if m["params"] != float64(6862464) || m["chat_template"] != nil {
				t.Errorf("inspect: %.300s", out)
			}
		case "version":
			if m["go"] == "" || m["webgpu"] != "v0.23.0" {
				t.Errorf("version: %s", out)
			}
		}
	}
	if out := mustRun(t, "", "--version"); !strings.Contains(out, "chameleon") || !strings.Contains(out, "cogentcore/webgpu v0.23.0") {
		t.Errorf("--version: %q", out)
	}
}

// No flag's help shows a value name from backquotes (pflag takes
// `quoted` text in a usage string as the value's name), and enum flags
// complete to their values.
func TestCLIFlagHelpAndCompletion(t *testing.T) {
	root := newRoot()
	var cmds = root.Commands()
	for len(cmds) > 0 {
		c := cmds[0]
		cmds = append(cmds[1:], c.Commands()...)
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); strings.Contains(name, " ") || strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: usage %q shows the value name %q", c.CommandPath(), f.Name, f.Usage, name)
			}
		})
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--adapt-mode", ""}, "online\nwindow\ntuned\n"},
		{[]string{"run", "--adapt-mode", ""}, "batch\nonline\none\n"},
		{[]string{"convert", "--dtype", ""}, "f32\nf16\nbf16\n"},
		{[]string{"generate", "--dtype", ""}, "f32\nf16\n"},
		{[]string{"serve", "--log", ""}, "text\njson\noff\n"},
	} {
		out := mustRun(t, "", append([]string{"__complete"}, c.args...)...)
		if !strings.HasPrefix(out, c.want) {
			t.Errorf("completing %v: %q, want %q first", c.args, out, c.want)
		}
	}
	if out := mustRun(t, "", "completion", "bash"); !strings.Contains(out, "__start_chameleon") {
		t.Errorf("completion bash: %.200s", out)
	}
}

// A long job whose stderr is not a terminal still reports its progress.
func TestCLIProgressLines(t *testing.T) {
	dir := tinyModel(t)
	data := filepath.Join(t.TempDir(), "data.txt")
	os.WriteFile(data, []byte(strings.Repeat("The cat sat on the mat.\n", 8)), 0o644)
	_, stderr, err := run(t, "", "perplexity", "--model", dir, "--data", data, "--context", "32")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`progress: step (\d+)/(\d+) \(100%\) perplexity windows`).MatchString(stderr) {
		t.Errorf("perplexity with stderr in a file printed no progress line:\n%s", stderr)
	}
}
