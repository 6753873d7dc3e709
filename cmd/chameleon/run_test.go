package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
	"github.com/chameleon-llm/chameleon/model"
)

// randomHyperFile writes a random hyper-network adapter (rank 2, so the
// file stays small) for the model in dir, with stored training centroids
// when cents > 0.
func randomHyperFile(t *testing.T, dir string, seed uint64, cents int) string {
	t.Helper()
	cfg, host, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := adaptrun.RandomHyper(cfg, host, 2, "", seed)
	if err != nil {
		t.Fatal(err)
	}
	if cents > 0 {
		data := make([]float32, cents*cfg.NEmbd)
		for i := range data {
			data[i] = float32(math.Sin(float64(i*7+int(seed)))) / float32(math.Sqrt(float64(cfg.NEmbd)))
		}
		a.Meta.Centroids = cents
		a.Tensors = append(a.Tensors, model.HostTensor{Name: adapt.CentroidsTensor, Shape: []int{cents, cfg.NEmbd}, Data: data})
	}
	path := filepath.Join(t.TempDir(), "hyper.safetensors")
	if err := adapt.Save(path, a); err != nil {
		t.Fatal(err)
	}
	return path
}

// (Over 80 lines: one run's report, checked field by field.)
func TestCLIRun(t *testing.T) {
	dir := tinyModel(t)
	ad := randomHyperFile(t, dir, 1, 0)
	out, stderr, err := run(t, "", "run", "--model", dir, "--adapter", ad, "--max-tokens", "3", "--clusters", "4", "--dtype", "f32")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	t.Logf("\n%s", out)
	samples, err := parseSamples(samplesText)
	if err != nil {
		t.Fatal(err)
	}
	// Every cluster row lists its prompts; together they are each prompt once.
	seen := map[int]bool{}
	clusterRow := regexp.MustCompile(`(?m)^  (\d+)  +([\d, ]+?)  +([a-z, ]+)$`)
	rows := clusterRow.FindAllStringSubmatch(out, -1)
	if len(rows) < 2 || len(rows) > 4 {
		t.Fatalf("%d cluster rows, want 2 to 4 (K = 4):\n%s", len(rows), out)
	}
	for _, r := range rows {
		for _, f := range strings.Split(r[2], ", ") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > len(samples) || seen[n] {
				t.Fatalf("cluster row %q: bad or repeated prompt %q", r[0], f)
			}
			seen[n] = true
		}
	}
	if len(seen) != len(samples) {
		t.Errorf("the clusters hold %d of %d prompts", len(seen), len(samples))
	}
	// One perplexity row per prompt with positive, finite numbers, and an
	// overall row; the random adapter does change the scores.
	pplRow := regexp.MustCompile(`(?m)^\s+(\d+)\s+([a-z]+)\s+(-?\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([+-][\d.]+)%\s+([\d.]+)\s+([+-][\d.]+)%\s*$`)
	prows := pplRow.FindAllStringSubmatch(out, -1)
	if len(prows) != len(samples) {
		t.Fatalf("%d perplexity rows, want %d:\n%s", len(prows), len(samples), out)
	}
	changed, cached := false, false
	for i, r := range prows {
		if r[2] != samples[i].domain {
			t.Errorf("row %d domain %q, want %q", i+1, r[2], samples[i].domain)
		}
		b, _ := strconv.ParseFloat(r[5], 64)
		a, _ := strconv.ParseFloat(r[6], 64)
		if !(b > 1 && a > 1) {
			t.Errorf("row %d: perplexities %v and %v", i+1, b, a)
		}
		changed = changed || r[7] != "+0.0"
		cached = cached || r[8] != r[6]
	}
	if !changed || !cached {
		t.Errorf("the adapter (%v) or the token cache (%v) changed no prompt's perplexity", changed, cached)
	}
	if !regexp.MustCompile(`(?m)^\s+all\s+` + strconv.Itoa(len(samples)) + `\s`).MatchString(out) {
		t.Errorf("no overall row:\n%s", out)
	}
	if c := strings.Count(out, "    base:    "); c != len(samples) {
		t.Errorf("%d base continuations, want %d", c, len(samples))
	}
	if c := strings.Count(out, "    adapted: "); c != len(samples) {
		t.Errorf("%d adapted continuations, want %d", c, len(samples))
	}
	if c := strings.Count(out, "    +cache:  "); c != len(samples) {
		t.Errorf("%d continuations with the cache, want %d", c, len(samples))
	}

	// On a small prompt set (the reference backend is slow): the two
	// backends print the same clusters and perplexities.
	pf := filepath.Join(t.TempDir(), "p.txt")
	os.WriteFile(pf, []byte("a\tThe cat sat on the mat.\nb\tfunc main() { fmt.Println(1) }\na\tThe dog lay on the rug.\nb\tint main(void) { return 0; }\n"), 0o644)
	small := []string{"run", "--model", dir, "--adapter", ad, "--max-tokens", "2", "--clusters", "2", "--prompts", pf, "--dtype", "f32"}
	cpu := mustRun(t, "", append(small, "--cpu")...)
	gpu := mustRun(t, "", small...)
	if a, b := clusterRow.FindAllString(cpu, -1), clusterRow.FindAllString(gpu, -1); len(a) == 0 || strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("clusters differ: reference\n%s\nwebgpu\n%s", cpu, gpu)
	}
	pc, pg := pplRow.FindAllStringSubmatch(cpu, -1), pplRow.FindAllStringSubmatch(gpu, -1)
	if len(pc) != 4 || len(pg) != 4 {
		t.Fatalf("perplexity rows: reference\n%s\nwebgpu\n%s", cpu, gpu)
	}
	for i := range pc {
		for _, col := range []int{5, 6, 8} {
			x, _ := strconv.ParseFloat(pc[i][col], 64)
			y, _ := strconv.ParseFloat(pg[i][col], 64)
			if math.Abs(x-y) > 0.01*x {
				t.Errorf("prompt %d column %d: reference %v, webgpu %v", i+1, col, x, y)
			}
		}
	}
	// ModeOne: every prompt in cluster 0.
	out = mustRun(t, "", "run", "--model", dir, "--adapter", ad, "--max-tokens", "2", "--prompts", pf, "--adapt-mode", "one")
	if !strings.Contains(out, "1 clusters (one mode)") || !regexp.MustCompile(`(?m)^\s+0\s+1, 2, 3, 4\s+a, b, a, b$`).MatchString(out) {
		t.Errorf("mode one:\n%s", out)
	}
}

func TestCLIRunErrors(t *testing.T) {
	dir := tinyModel(t)
	cases := []struct {
		args []string
		want string
	}{
		// Without --model the embedded default model is used: the missing
		// adapter file is what fails.
		{[]string{"run", "--adapter", "x.safetensors"}, "x.safetensors"},
		{[]string{"run", "--model", dir}, "default hyper-network"},
		{[]string{"run", "--model", dir, "--adapter", "none"}, "give an adapter"},
		{[]string{"run", "--model", dir, "--adapter", filepath.Join(dir, "missing.safetensors")}, "missing.safetensors"},
		{[]string{"run", "--model", dir, "--adapter", "x", "--adapt-mode", "nearest"}, "--adapt-mode"},
		{[]string{"run", "--model", dir, "--adapter", "x", "--clusters", "-1"}, "--clusters"},
	}
	for _, c := range cases {
		if _, stderr, err := run(t, "", c.args...); err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: err %v, stderr %q (want %q)", c.args, err, stderr, c.want)
		}
	}
	// An adapter for another model is refused, naming the mismatch.
	small := filepath.Join(t.TempDir(), "small")
	mustRun(t, "", "init", "--config", "tiny", "--seed", "4", "--out", small)
	ad := randomHyperFile(t, small, 2, 0)
	if _, stderr, err := run(t, "", "run", "--model", dir, "--adapter", ad); err == nil || !strings.Contains(stderr, "fingerprint") {
		t.Errorf("adapter for another model: err %v, stderr %q", err, stderr)
	}
	// Online assignment needs centroids.
	if _, stderr, err := run(t, "", "run", "--model", dir, "--adapter", randomHyperFile(t, dir, 3, 0), "--adapt-mode", "online"); err == nil || !strings.Contains(stderr, "centroids") {
		t.Errorf("online without centroids: err %v, stderr %q", err, stderr)
	}
}

// TestCLIAdapterFlags: generate prints each prompt's cluster and adapts
// them in one batch; perplexity scores with the adapter; bench --adapter
// reports both times and their ratio.
func TestCLIAdapterFlags(t *testing.T) {
	dir := tinyModel(t)
	ad := randomHyperFile(t, dir, 5, 3)
	prompts := []string{"int main(void) { return 0; }", "The cat sat on the mat.", "int x = 1;", "The dog ran."}
	args := append([]string{"generate", "--model", dir, "--dtype", "f32", "--temperature", "0", "--max-tokens", "4", "--clusters", "2"}, prompts...)
	base := mustRun(t, "", args...)
	out, stderr, err := run(t, "", append(args, "--adapter", ad)...)
	if err != nil {
		t.Fatalf("generate --adapter: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "2 clusters (batch mode)") || strings.Count(stderr, "  cluster ") < 1 {
		t.Errorf("generate --adapter did not print the clusters:\n%s", stderr)
	}
	if out == base {
		t.Errorf("the adapter changed no continuation:\n%s", out)
	}
	cpuOut := mustRun(t, "", append(args, "--adapter", ad, "--cpu")...)
	if cpuOut != out {
		t.Errorf("adapted greedy generation differs between backends:\nwebgpu %q\nref    %q", out, cpuOut)
	}
	// Online assignment to the stored centroids runs too.
	mustRun(t, "", append(args, "--adapter", ad, "--adapt-mode", "online")...)
	// More clusters than prompts is capped at one prompt each.
	_, stderr, err = run(t, "", "generate", "--model", dir, "--max-tokens", "2", "--adapter", ad, "--clusters", "9", "one", "two")
	if err != nil || !strings.Contains(stderr, "2 clusters") {
		t.Errorf("--clusters 9 over 2 prompts: err %v, stderr %q", err, stderr)
	}

	data := filepath.Join(t.TempDir(), "data.txt")
	os.WriteFile(data, []byte(strings.Repeat("The cat sat on the mat. It was a sunny day in the park.\n", 12)), 0o644)
	var p0, p1, pc struct {
		Perplexity float64 `json:"perplexity"`
		Tokens     int     `json:"tokens"`
		Clusters   int     `json:"clusters"`
	}
	pargs := []string{"perplexity", "--model", dir, "--dtype", "f32", "--data", data, "--context", "64", "--stride", "32", "--json"}
	json.Unmarshal([]byte(mustRun(t, "", pargs...)), &p0)
	json.Unmarshal([]byte(mustRun(t, "", append(pargs, "--adapter", ad, "--clusters", "2")...)), &p1)
	json.Unmarshal([]byte(mustRun(t, "", append(pargs, "--adapter", ad, "--clusters", "2", "--cpu")...)), &pc)
	if p1.Tokens != p0.Tokens || p1.Clusters != 2 || p1.Perplexity == p0.Perplexity || !(p1.Perplexity > 1) {
		t.Errorf("perplexity with the adapter %+v, without %+v", p1, p0)
	}
	if math.Abs(p1.Perplexity-pc.Perplexity) > 1e-3*pc.Perplexity {
		t.Errorf("adapted perplexity webgpu %v, reference %v", p1.Perplexity, pc.Perplexity)
	}
	if _, stderr, err := run(t, "", append(pargs, "--adapter", "default")...); err == nil || !strings.Contains(stderr, "default hyper-network") {
		t.Errorf("--adapter default without one: err %v, stderr %q", err, stderr)
	}

	out = mustRun(t, "", "bench", "--adapter", "random", "--config", "tiny", "--batches", "4", "--seq", "16", "--reps", "1", "--adapter-rank", "2", "--json")
	var rep struct {
		Adapt []struct {
			Batch    int     `json:"batch"`
			Seq      int     `json:"seq"`
			Base     float64 `json:"base_seconds"`
			Adapted  float64 `json:"adapted_seconds"`
			Plan     float64 `json:"plan_seconds"`
			Overhead float64 `json:"overhead"`
		} `json:"adapt"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Adapt) != 1 {
		t.Fatalf("bench --adapter report: %s", out)
	}
	r := rep.Adapt[0]
	if r.Batch != 4 || r.Seq != 16 || !(r.Base > 0 && r.Adapted > r.Plan && r.Plan > 0) || math.Abs(r.Overhead-(r.Adapted-r.Base)/r.Base) > 1e-9 {
		t.Errorf("bench --adapter: %+v", r)
	}
	if _, stderr, err := run(t, "", "bench", "--adapter", ad, "--config", "tiny", "--batches", "2", "--seq", "8", "--reps", "1"); err == nil || !strings.Contains(stderr, "fingerprint") {
		t.Errorf("bench with an adapter of another model: err %v, stderr %q", err, stderr)
	}
}
