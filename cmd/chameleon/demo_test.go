//go:build !js

package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/serve"
)

// demoPrompts are the test's batch; the first is the fixed prompt whose
// logits are compared.
var demoPrompts = []string{
	"The quick brown fox jumps over",
	"func main() { fmt.Println(",
	"Dear colleagues, the meeting on",
}

const demoMaxTokens = 6

// TestDemoInBrowser runs the demo page in headless Chromium (WebGPU on
// SwiftShader) against a small random model with a hyper-network, drives it
// like a person (prompts, "generate with and without adaptation"), and
// checks the browser against the native WebGPU run: logits of the fixed
// prompt within tolerance, greedy tokens and clusters exactly. It fails when
// chromium or its WebGPU is missing. The screenshot is kept in the test's
// artifact directory and, when CHAMELEON_DEMO_SCREENSHOT names a path
// (relative: to the module root), there too.
func TestDemoInBrowser(t *testing.T) {
	chrome := findChromium(t)
	root, ok := sourceRoot()
	if !ok {
		t.Fatal("not inside Chameleon's source tree")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	wasmDir := t.TempDir()
	t0 := time.Now()
	if err := buildWasm(ctx, goTool(), root, wasmDir); err != nil {
		t.Fatal(err)
	}
	t.Logf("wasm built in %v", time.Since(t0).Round(time.Millisecond))

	// A small model with GPT-2's vocabulary (so the embedded and the served
	// tokenizer agree) and a random hyper-network for it.
	cfg := model.Config{VocabSize: 50257, NCtx: 64, NEmbd: 32, NHead: 2, NLayer: 2, LNEps: 1e-5}
	host := model.RandomInit(cfg, 7)
	dir := t.TempDir()
	tok, err := model.NewGPT2Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	if err := saveModel(dir, cfg, host, "f32", tok); err != nil {
		t.Fatal(err)
	}
	base, err := adapt.BaseOf(cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	hc := adapt.DefaultHyper(cfg.NEmbd, cfg.VocabSize, 2)
	hc.Alpha = 4
	// Generated updates inside the decoder too (qkv and fc2 of every
	// layer), so that the browser runs the per-row shrink and expand
	// kernels and a KV cache of adapted keys and values.
	ad := &adapt.Adapter{
		Meta: adapt.Meta{Kind: adapt.KindHyper, Rank: hc.Rank, Alpha: hc.Alpha, Hidden: hc.Hidden, Dropout: hc.Dropout, Base: base,
			Sites: []string{model.SiteQKV, model.SiteFC2}},
		Tensors: adapt.InitHyper(hc, 3),
	}
	for _, st := range ad.Meta.Spec()[len(ad.Tensors):] {
		st.Data = make([]float32, gpu.Numel(st.Shape))
		for i := range st.Data {
			st.Data[i] = float32(math.Sin(float64(i)*0.37)) * 0.05
		}
		ad.Tensors = append(ad.Tensors, st)
	}
	if err := adapt.Save(filepath.Join(dir, "hyper.safetensors"), ad); err != nil {
		t.Fatal(err)
	}

	srv, err := newDemoServer(demoConfig{Model: os.DirFS(dir), Label: "test model", WasmDir: wasmDir})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs, cl, err := serve.NewHTTPServer(srv, ln, serve.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(cl) //nolint:errcheck // ends with Close
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/"

	// The browser half.
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chrome),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("enable-unsafe-webgpu", true),
		chromedp.Flag("enable-features", "Vulkan"),
		chromedp.WindowSize(1200, 1000),
	)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	var logMu sync.Mutex
	var console []string
	if err := chromedp.Listen(bctx, func(ev any) {
		logMu.Lock()
		defer logMu.Unlock()
		switch e := ev.(type) {
		case *cdpruntime.EventConsoleAPICalled:
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
			}
			console = append(console, string(e.Type)+": "+strings.Join(parts, " "))
		case *cdpruntime.EventExceptionThrown:
			console = append(console, "exception: "+e.ExceptionDetails.Text+" "+exceptionText(e.ExceptionDetails))
		}
	}); err != nil {
		t.Fatalf("starting chromium (%s): %v", chrome, err)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("%s\nbrowser console:\n  %s", fmt.Sprintf(format, args...), strings.Join(console, "\n  "))
	}

	t0 = time.Now()
	type pageState struct {
		Ready bool   `json:"ready"`
		Error string `json:"error"`
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		fail("opening the demo page: %v", err)
	}
	state, err := chromedp.Run(bctx, chromedp.Poll[pageState](
		`window.demo && (demo.ready || demo.error) ? {ready: demo.ready, error: demo.error || ""} : null`,
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(2*time.Minute)))
	if err != nil {
		fail("loading the demo page: %v", err)
	}
	if !state.Ready {
		fail("the demo page did not load the model: %s", state.Error)
	}
	t.Logf("page ready (model on the browser's GPU) in %v", time.Since(t0).Round(time.Millisecond))

	// Drive the page: our prompts, greedy, a few tokens, two clusters, then
	// "generate with and without adaptation".
	t0 = time.Now()
	setPrompts := fmt.Sprintf(`(() => {
		const want = %s;
		const ts = [...document.querySelectorAll("#prompts textarea")];
		ts.forEach((t, i) => { t.value = i < want.length ? want[i] : ""; });
		return ts.length >= want.length;
	})()`, jsStrings(demoPrompts))
	enough, err := chromedp.Run(bctx, chromedp.Evaluate[bool](setPrompts))
	if err != nil || !enough {
		fail("filling the prompt boxes: %v (enough boxes: %v)", err, enough)
	}
	if err := chromedp.Do(bctx,
		chromedp.SetValue("#max-tokens", fmt.Sprint(demoMaxTokens)),
		chromedp.SetValue("#temperature", "0"),
		chromedp.SetValue("#seed", "1"),
		chromedp.SetValue("#clusters", "2"),
		chromedp.Click("#gen-both"),
	); err != nil {
		fail("driving the page: %v", err)
	}
	last, err := chromedp.Run(bctx, chromedp.Poll[lastRun](`demo.last && demo.last.done ? demo.last : null`,
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(2*time.Minute)))
	if err != nil {
		fail("generating in the page: %v", err)
	}
	if last.Error != "" || len(last.Runs) != 2 {
		fail("generation in the page failed: %q (%d runs)", last.Error, len(last.Runs))
	}
	t.Logf("browser generated in %v: %.1f tokens/s base, %.1f adapted", time.Since(t0).Round(time.Millisecond),
		last.Runs[0].TokensPerSec, last.Runs[1].TokensPerSec)
	shown := checkDemoExplains(t, bctx, fail, last)

	type logitsResult struct {
		T   int    `json:"t"`
		V   int    `json:"v"`
		B64 string `json:"b64"`
	}
	logitsJS := fmt.Sprintf(`chameleon.logits(%s).then((r) => {
		const u8 = new Uint8Array(r.data.buffer);
		let s = "";
		for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
		return {t: r.t, v: r.v, b64: btoa(s)};
	})`, jsStrings(demoPrompts[:1])+"[0]")
	lg, err := chromedp.Run(bctx, chromedp.Evaluate[logitsResult](logitsJS, chromedp.EvalAwaitPromise))
	if err != nil {
		fail("logits in the page: %v", err)
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		fail("screenshot: %v", err)
	}
	saveScreenshot(t, root, png)

	// Sampled generation (temperature 0.8, seed 5): the page's host RNG
	// feeds the same uniforms as native, so the tokens must agree too.
	if err := chromedp.Do(bctx,
		chromedp.SetValue("#temperature", "0.8"),
		chromedp.SetValue("#top-k", "0"),
		chromedp.SetValue("#seed", "5"),
		chromedp.Evaluate[chromedp.Void](`demo.last = null`),
		chromedp.Click("#gen-base"),
	); err != nil {
		fail("driving the page (sampled): %v", err)
	}
	sampled, err := chromedp.Run(bctx, chromedp.Poll[lastRun](`demo.last && demo.last.done ? demo.last : null`,
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(time.Minute)))
	if err != nil || sampled.Error != "" || len(sampled.Runs) != 1 {
		fail("sampled generation in the page: %v %q", err, sampled.Error)
	}

	// A prompt over the context: a message on the page, not in the console.
	long := strings.Repeat("word ", cfg.NCtx+5)
	if err := chromedp.Do(bctx,
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector("#prompts textarea").value = %q; demo.last = null`, long)),
		chromedp.Click("#gen-base"),
	); err != nil {
		fail("driving the page (long prompt): %v", err)
	}
	msg, err := chromedp.Run(bctx, chromedp.Poll[string](
		`demo.last && demo.last.done && !document.querySelector("#error").hidden ? document.querySelector("#error").textContent : null`,
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(time.Minute)))
	if err != nil {
		fail("the page showed no message for a prompt over the context: %v", err)
	}
	if !strings.Contains(msg, "context") || !strings.Contains(msg, "prompt 1") {
		t.Errorf("message for a prompt over the context: %q", msg)
	}
	repeatDemo(t, bctx, fail, setPrompts, long, &logMu, &console)

	raw, err := base64.StdEncoding.DecodeString(lg.B64)
	if err != nil {
		t.Fatal(err)
	}
	browserLogits := make([]float32, len(raw)/4)
	for i := range browserLogits {
		browserLogits[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}

	// The native half: the same weights (f16 on the GPU, as the page
	// uploads them) on this machine's adapter.
	b := gpu.NewWebGPU(gputest.Device(t))
	w, err := model.Upload(b, cfg, host, gpu.F16)
	if err != nil {
		t.Fatal(err)
	}
	m := &model.Model{Cfg: cfg, W: w, B: b}
	ids := make([][]int32, len(demoPrompts))
	for i, p := range demoPrompts {
		ids[i] = tok.Encode(p)
	}
	cache, err := m.NewCache(1, len(ids[0]))
	if err != nil {
		t.Fatal(err)
	}
	lt, err := m.Forward(cache, ids[:1])
	if err != nil {
		t.Fatal(err)
	}
	nativeLogits, err := b.ReadF32(lt)
	b.Free(lt)
	m.FreeCache(cache)
	if err != nil {
		t.Fatal(err)
	}
	if lg.T != len(ids[0]) || lg.V != cfg.VocabSize || len(browserLogits) != len(nativeLogits) {
		t.Fatalf("browser logits are (%d, %d) with %d values; native (%d, %d)", lg.T, lg.V, len(browserLogits), len(ids[0]), cfg.VocabSize)
	}
	const atol, rtol = 1e-3, 1e-3
	bad, worst, at := 0, 0.0, 0
	for i, want := range nativeLogits {
		d := math.Abs(float64(browserLogits[i] - want))
		if d > atol+rtol*math.Abs(float64(want)) || math.IsNaN(float64(browserLogits[i])) {
			bad++
		}
		if d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	if bad > 0 {
		t.Errorf("browser logits differ from native at %d of %d values; worst |diff| %g at %d (browser %g, native %g)",
			bad, len(nativeLogits), worst, at, browserLogits[at], nativeLogits[at])
	}
	t.Logf("logits (%d x %d): max |browser - native| = %.3g", lg.T, lg.V, worst)

	opt := model.GenerateOptions{MaxTokens: demoMaxTokens, Seed: 1, StopAtEOT: true}
	gens, err := m.Generate(tok, ids, opt)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := adapt.NewRuntime(m, ad)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Free()
	plan, err := rt.Plan(ids, adapt.PlanOptions{Mode: adapt.ModeBatch, K: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Free()
	opt.Adapter = plan.Adapter(nil)
	agens, err := m.Generate(tok, ids, opt)
	if err != nil {
		t.Fatal(err)
	}
	if got := last.Runs[1].Plan.Assign; !slices.Equal(got, plan.Cluster) {
		t.Errorf("browser clusters %v, native %v", got, plan.Cluster)
	}
	// The page's perplexity table holds the native scores of each prompt
	// and cluster, with and without the update (f16 weights on both).
	nb, err := m.ScoreChunked(ids, func(int) model.Adapter { return nil })
	if err != nil {
		t.Fatal(err)
	}
	na, err := m.ScoreChunked(ids, func(first int) model.Adapter { return plan.AdapterFrom(first, nil) })
	if err != nil {
		t.Fatal(err)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-3*want }
	for i, p := range shown.Scores.Prompts {
		if p.Tokens != nb[i].Tokens || !near(p.Base, nb[i].Perplexity()) || !near(p.Adapted, na[i].Perplexity()) {
			t.Errorf("prompt %d: page %+v, native base %.4f adapted %.4f over %d tokens", i+1, p, nb[i].Perplexity(), na[i].Perplexity(), nb[i].Tokens)
		}
	}
	for _, c := range shown.Scores.Clusters {
		var b, a model.SequenceScore
		for _, p := range c.Prompts {
			b.NLL, b.Tokens = b.NLL+nb[p-1].NLL, b.Tokens+nb[p-1].Tokens
			a.NLL, a.Tokens = a.NLL+na[p-1].NLL, a.Tokens+na[p-1].Tokens
		}
		if c.Tokens != b.Tokens || !near(c.Base, b.Perplexity()) || !near(c.Adapted, a.Perplexity()) {
			t.Errorf("cluster %d: page %+v, native base %.4f adapted %.4f", c.Cluster, c, b.Perplexity(), a.Perplexity())
		}
	}
	differs := false
	for i := range demoPrompts {
		for r, want := range [][]int32{gens[i].Tokens, agens[i].Tokens} {
			got := last.Runs[r].Results[i].Tokens
			if !slices.Equal(got, want) {
				t.Errorf("prompt %d, %s: browser tokens %v, native %v", i, []string{"base", "adapted"}[r], got, want)
			}
		}
		differs = differs || !slices.Equal(gens[i].Tokens, agens[i].Tokens)
	}
	sopt := model.GenerateOptions{MaxTokens: demoMaxTokens, Seed: 5, StopAtEOT: true, Sample: gpu.SampleParams{Temperature: 0.8, TopP: 1}}
	sgens, err := m.Generate(tok, ids, sopt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range demoPrompts {
		if got := sampled.Runs[0].Results[i].Tokens; !slices.Equal(got, sgens[i].Tokens) {
			t.Errorf("prompt %d, sampled: browser tokens %v, native %v", i, got, sgens[i].Tokens)
		}
	}
	if !differs {
		t.Errorf("adaptation changed no token of any prompt: the adapted run does not exercise the hyper-network")
	}
}

// demoShown is what the page shows after "generate with and without
// adaptation": the legend, axes, compile line, perplexity table and
// highlighted tokens, as numbers where they are numbers.
type demoShown struct {
	Legend  []string `json:"legend"`
	Axes    string   `json:"axes"`
	Compile string   `json:"compile"`
	Stats   string   `json:"stats"`
	Cells   []string `json:"cells"`
	Marks   int      `json:"marks"`
	Scores  struct {
		Prompts []struct {
			Prompt, Cluster, Tokens int
			Base, Adapted           float64
		} `json:"prompts"`
		Clusters []struct {
			Cluster, Tokens int
			Prompts         []int
			Base, Adapted   float64
		} `json:"clusters"`
	} `json:"scores"`
}

// checkDemoExplains checks that the page explains the run it just made:
// a legend naming each cluster (1-based) and its prompts, axes saying
// what the plot's components are, the shader compilation time apart from
// the generation speed, a perplexity table with a row per prompt and per
// cluster holding numbers, the adapted tokens that differ from the base
// run's marked; and that at 400 px wide nothing overflows the window.
func checkDemoExplains(t *testing.T, bctx context.Context, fail func(string, ...any), last lastRun) demoShown {
	t.Helper()
	read := `(() => ({
		legend: [...document.querySelectorAll("#scatter-legend .item")].map((e) => e.textContent),
		axes: document.querySelector("#scatter-axes").textContent,
		compile: document.querySelector("#compile").textContent,
		stats: document.querySelector("#stats").textContent,
		cells: [...document.querySelectorAll("#ppl-table td")].map((e) => e.textContent),
		marks: document.querySelectorAll("#outputs mark.diff").length,
		scores: demo.scores,
	}))()`
	shown, err := chromedp.Run(bctx, chromedp.Evaluate[demoShown](read))
	if err != nil {
		fail("reading the page: %v", err)
	}
	assign := last.Runs[1].Plan.Assign
	members := map[int][]string{}
	for i, c := range assign {
		members[c] = append(members[c], fmt.Sprint(i+1))
	}
	if len(shown.Legend) != len(members) {
		t.Errorf("legend %q, want one entry per cluster of %v", shown.Legend, assign)
	}
	for c, ms := range members {
		want := fmt.Sprintf("cluster %d: prompt", c+1)
		found := false
		for _, l := range shown.Legend {
			found = found || (strings.HasPrefix(l, want) && strings.HasSuffix(l, " "+strings.Join(ms, ", ")))
		}
		if !found {
			t.Errorf("legend %q has no entry %q... for prompts %v", shown.Legend, want, ms)
		}
	}
	if !strings.Contains(shown.Axes, "PC 1") || !strings.Contains(shown.Axes, "PC 2") || !strings.Contains(shown.Axes, "mean token embedding") {
		t.Errorf("axes caption %q does not say what the components are", shown.Axes)
	}
	if m := regexp.MustCompile(`Shader compilation: (\d+\.\d+) s`).FindStringSubmatch(shown.Compile); m == nil || m[1] == "0.00" {
		t.Errorf("compile line %q: want the warm-up's seconds", shown.Compile)
	}
	if !regexp.MustCompile(`base: \d+ tokens in [\d.]+ s = [\d.]+ tokens/s`).MatchString(shown.Stats) {
		t.Errorf("stats %q", shown.Stats)
	}
	if len(shown.Scores.Prompts) != len(assign) || len(shown.Scores.Clusters) != len(members) {
		t.Errorf("perplexity table: %d prompt rows, %d cluster rows; want %d and %d", len(shown.Scores.Prompts), len(shown.Scores.Clusters), len(assign), len(members))
	}
	numbers := 0
	for _, c := range shown.Cells {
		if regexp.MustCompile(`^\d+\.\d\d$`).MatchString(c) {
			numbers++
		}
	}
	if want := 2 * (len(assign) + len(members) + 1); numbers != want {
		t.Errorf("perplexity table shows %d perplexities, want %d: %q", numbers, want, shown.Cells)
	}
	differ := 0
	for i, r := range last.Runs[1].Results {
		for j, id := range r.Tokens {
			if b := last.Runs[0].Results[i].Tokens; j >= len(b) || b[j] != id {
				differ++
			}
		}
	}
	if shown.Marks != differ || differ == 0 {
		t.Errorf("%d adapted tokens marked, %d differ from the base run's", shown.Marks, differ)
	}

	// A 400 px wide window: nothing wider than the page.
	narrow := `new Promise((res) => setTimeout(() => res({
		scroll: document.documentElement.scrollWidth,
		canvas: document.querySelector("#scatter").getBoundingClientRect().right,
		legend: document.querySelector("#scatter-legend").getBoundingClientRect().right,
	}), 300))`
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(400, 900)); err != nil {
		fail("a 400 px viewport: %v", err)
	}
	nw, err := chromedp.Run(bctx, chromedp.Evaluate[struct{ Scroll, Canvas, Legend float64 }](narrow, chromedp.EvalAwaitPromise))
	if err != nil {
		fail("reading the narrow page: %v", err)
	}
	if nw.Scroll > 400 || nw.Canvas > 400 || nw.Legend > 400 {
		t.Errorf("at 400 px wide the page is %v px wide (plot to %v, legend to %v)", nw.Scroll, nw.Canvas, nw.Legend)
	}
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1200, 1000)); err != nil {
		fail("restoring the viewport: %v", err)
	}
	return shown
}

// demoRun is one run of the page's generate (window.demo.runs).
type demoRun struct {
	Adapted bool `json:"adapted"`
	Results []struct {
		Tokens []int32 `json:"tokens"`
		Text   string  `json:"text"`
	} `json:"results"`
	Plan struct {
		Assign []int `json:"assign"`
		K      int   `json:"k"`
	} `json:"plan"`
	TokensPerSec float64 `json:"tokensPerSec"`
}

// lastRun is window.demo.last: the outcome of the last click on a
// generate button.
type lastRun struct {
	Done  bool      `json:"done"`
	Error string    `json:"error"`
	Runs  []demoRun `json:"runs"`
}

// demoRepeats is how many times repeatDemo runs the page's sequence.
const demoRepeats = 10

// repeatDemo runs the page's whole sequence demoRepeats times in the
// same page, as a person would: the prompts (setPrompts), Cluster,
// "generate with and without adaptation", a prompt over the context (long)
// that must give a clear message and clear the previous output and plot,
// then generate again. Every run must give the first run's tokens (greedy);
// any other error, on the page or in the console, fails the test. An
// upload that crossed a growth of the wasm memory used to fail here
// (writeBuffer of a detached view; see gpu/device_js.go queueWrite).
func repeatDemo(t *testing.T, bctx context.Context, fail func(string, ...any), setPrompts, long string, logMu *sync.Mutex, console *[]string) {
	t.Helper()
	t0 := time.Now()
	poll := func(what, js string) lastRun {
		t.Helper()
		r, err := chromedp.Run(bctx, chromedp.Poll[lastRun](js,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(time.Minute)))
		if err != nil {
			fail("%s: %v", what, err)
		}
		return r
	}
	click := func(what, id string, reset string) {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.Evaluate[chromedp.Void](reset), chromedp.Click(id)); err != nil {
			fail("%s: %v", what, err)
		}
	}
	tokens := func(r lastRun) [][]int32 {
		var out [][]int32
		for _, run := range r.Runs {
			for _, res := range run.Results {
				out = append(out, res.Tokens)
			}
		}
		return out
	}
	var wantBoth, wantBase [][]int32
	for i := range demoRepeats {
		it := fmt.Sprintf("repeat %d of %d", i+1, demoRepeats)
		if err := chromedp.Do(bctx,
			chromedp.Evaluate[chromedp.Void](setPrompts),
			chromedp.SetValue("#max-tokens", "2"),
			chromedp.SetValue("#temperature", "0"),
			chromedp.SetValue("#clusters", "2"),
		); err != nil {
			fail("%s: setting the prompts: %v", it, err)
		}
		click(it+": cluster", "#do-cluster", `demo.lastCluster = null`)
		if c := poll(it+": clustering", `demo.lastCluster && demo.lastCluster.done ? {done: true, error: demo.lastCluster.error || ""} : null`); c.Error != "" {
			fail("%s: clustering failed: %s", it, c.Error)
		}
		click(it+": generate both", "#gen-both", `demo.last = null`)
		both := poll(it+": generating with and without adaptation", `demo.last && demo.last.done ? demo.last : null`)
		if both.Error != "" || len(both.Runs) != 2 {
			fail("%s: generation with and without adaptation failed: %q (%d runs)", it, both.Error, len(both.Runs))
		}
		cells, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#outputs .col").length`))
		if err != nil || cells != 2*len(demoPrompts) {
			fail("%s: %d output columns on the page, want %d (%v)", it, cells, 2*len(demoPrompts), err)
		}

		click(it+": over-long prompt", "#gen-base", fmt.Sprintf(`document.querySelector("#prompts textarea").value = %q; demo.last = null`, long))
		bad := poll(it+": the over-long prompt", `demo.last && demo.last.done ? demo.last : null`)
		type shown struct {
			Error   string `json:"error"`
			Outputs int    `json:"outputs"`
			Stats   string `json:"stats"`
			Ink     int    `json:"ink"`
		}
		st, err := chromedp.Run(bctx, chromedp.Evaluate[shown](`(() => {
			const cv = document.querySelector("#scatter");
			const px = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
			let ink = 0;
			for (let j = 3; j < px.length; j += 4) if (px[j] !== 0) ink++;
			const e = document.querySelector("#error");
			return {error: e.hidden ? "" : e.textContent, outputs: document.querySelector("#outputs").children.length,
				stats: document.querySelector("#stats").textContent, ink};
		})()`))
		if err != nil {
			fail("%s: reading the page after the over-long prompt: %v", it, err)
		}
		if !strings.Contains(bad.Error, "context") || !strings.Contains(st.Error, "context") {
			fail("%s: over-long prompt: error %q, shown %q; want a message about the context", it, bad.Error, st.Error)
		}
		if st.Outputs != 0 || st.Stats != "" || st.Ink != 0 {
			fail("%s: after the error the page still shows the previous run: %d outputs, stats %q, %d plotted pixels", it, st.Outputs, st.Stats, st.Ink)
		}

		if err := chromedp.Do(bctx, chromedp.Evaluate[chromedp.Void](setPrompts)); err != nil {
			fail("%s: %v", it, err)
		}
		click(it+": generate again", "#gen-base", `demo.last = null`)
		base := poll(it+": generating again", `demo.last && demo.last.done ? demo.last : null`)
		if base.Error != "" || len(base.Runs) != 1 {
			fail("%s: generation after the error failed: %q", it, base.Error)
		}
		if i == 0 {
			wantBoth, wantBase = tokens(both), tokens(base)
		}
		if got := tokens(both); !slices.EqualFunc(got, wantBoth, slices.Equal) {
			fail("%s: tokens with and without adaptation %v, first repeat %v", it, got, wantBoth)
		}
		if got := tokens(base); !slices.EqualFunc(got, wantBase, slices.Equal) {
			fail("%s: tokens %v, first repeat %v", it, got, wantBase)
		}
	}
	logMu.Lock()
	var errs []string
	for _, l := range *console {
		if strings.HasPrefix(l, "error") || strings.HasPrefix(l, "exception") {
			errs = append(errs, l)
		}
	}
	logMu.Unlock()
	if len(errs) > 0 {
		fail("%d errors in the browser console during the repeats", len(errs))
	}
	t.Logf("the demo sequence ran %d times in one page in %v", demoRepeats, time.Since(t0).Round(time.Millisecond))
}

// findChromium is Debian's chromium (or another Chrome) on PATH; the test
// fails without one, with the fix.
func findChromium(t *testing.T) string {
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: the browser test needs it (scripts/deps.sh installs Debian's chromium; `make test` runs it)")
	return ""
}

// jsStrings is a JS array literal of ss.
func jsStrings(ss []string) string {
	var b strings.Builder
	b.WriteString("[")
	for i, s := range ss {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%q", s) // Go's quoting is valid JS for these ASCII strings
	}
	b.WriteString("]")
	return b.String()
}

func saveScreenshot(t *testing.T, root string, png []byte) {
	p := filepath.Join(t.ArtifactDir(), "demo.png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("screenshot: %s", p)
	if dst := os.Getenv("CHAMELEON_DEMO_SCREENSHOT"); dst != "" {
		if !filepath.IsAbs(dst) {
			dst = filepath.Join(root, dst)
		}
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Error(err)
		}
		t.Logf("screenshot: %s", dst)
	}
}

// exceptionText is the description of a thrown exception, when it has one.
func exceptionText(d *cdpruntime.ExceptionDetails) string {
	if d.Exception != nil {
		return d.Exception.Description
	}
	return ""
}
