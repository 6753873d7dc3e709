//go:build !js

package main

import (
	"context"
	"fmt"
	"math"
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
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// What TestDemoInBrowser reads off the page and the steps it repeats there.

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
// (Over 80 lines: one read of the page, then one check per thing it must show.)
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
	Cache        *struct {
		Pool       []int     `json:"pool"`
		Own        []float64 `json:"own"`
		PoolWeight []float64 `json:"poolWeight"`
	} `json:"cache"`
}

// cachePrompts are the prompts of the run with the token cache: each
// repeats itself, so that the cache's own counts help it and its weights
// move the greedy tokens (the short demo prompts choose no cache at all).
var cachePrompts = []string{
	"one two three one two three one two three one two",
	"red green blue red green blue red green blue red",
	"alpha beta gamma alpha beta gamma alpha beta gamma",
}

// cachedDemoRun fills the prompt boxes with cachePrompts, ticks the page's
// "token cache" box, clicks "generate with and without adaptation"
// (greedy, seed 1), then unticks the box and puts the demo prompts back
// (setPrompts): the adapted run mixes the token cache in.
func cachedDemoRun(t *testing.T, bctx context.Context, fail func(string, ...any), setPrompts string) lastRun {
	t.Helper()
	fill := fmt.Sprintf(`(() => {
		const want = %s;
		document.querySelectorAll("#prompts textarea").forEach((t, i) => { t.value = i < want.length ? want[i] : ""; });
	})()`, jsStrings(cachePrompts))
	if err := chromedp.Do(bctx,
		chromedp.Evaluate[chromedp.Void](fill),
		chromedp.SetValue("#temperature", "0"),
		chromedp.SetValue("#seed", "1"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#cache").checked = true; demo.last = null`),
		chromedp.Click("#gen-both"),
	); err != nil {
		fail("driving the page (token cache): %v", err)
	}
	r, err := chromedp.Run(bctx, chromedp.Poll[lastRun](`demo.last && demo.last.done ? demo.last : null`,
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(time.Minute)))
	if err != nil || r.Error != "" || len(r.Runs) != 2 || r.Runs[1].Cache == nil {
		fail("generation with the token cache in the page: %v %q (%d runs)", err, r.Error, len(r.Runs))
	}
	if err := chromedp.Do(bctx, chromedp.Evaluate[chromedp.Void](`document.querySelector("#cache").checked = false`),
		chromedp.Evaluate[chromedp.Void](setPrompts)); err != nil {
		fail("unticking the token cache: %v", err)
	}
	return r
}

// checkCachedRun: the page's run with the token cache over cachePrompts
// gave each prompt the native plan's pool and weights and, greedy, its
// tokens, and the cache changed some token of the adapted run without it
// (else this would show nothing).
//
// (Over 80 lines: the native plan, its run without and with the cache,
// then every prompt's pool, weights and tokens against the page's.)
func checkCachedRun(t *testing.T, m *model.Model, tok *tokenizer.Tokenizer, rt *adapt.Runtime, got lastRun) {
	t.Helper()
	ids := make([][]int32, len(cachePrompts))
	for i, p := range cachePrompts {
		ids[i] = tok.Encode(p)
	}
	plan, err := rt.Plan(ids, adapt.PlanOptions{Mode: adapt.ModeBatch, K: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Free()
	opt := model.GenerateOptions{MaxTokens: demoMaxTokens, Seed: 1, StopAtEOT: true, Adapter: plan.Adapter(nil)}
	adapted, err := m.Generate(tok, ids, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.EnableCache(ids, adapt.UniformCache(m.Cfg.VocabSize), adapt.DefaultBatchSize); err != nil {
		t.Fatal(err)
	}
	if opt.Adapter, err = plan.CacheAdapter(nil); err != nil {
		t.Fatal(err)
	}
	gens, err := m.Generate(tok, ids, opt)
	if err != nil {
		t.Fatal(err)
	}
	c := got.Runs[1].Cache
	if len(c.Pool) != len(ids) || len(got.Runs[1].Results) != len(ids) {
		t.Fatalf("the page's cached run has %d pools and %d results for %d prompts", len(c.Pool), len(got.Runs[1].Results), len(ids))
	}
	differs := false
	for i := range ids {
		differs = differs || !slices.Equal(gens[i].Tokens, adapted[i].Tokens)
		g, w, _ := plan.CacheWeightsOf(i)
		if c.Pool[i] != g || math.Abs(c.Own[i]-w.Own) > 1e-9 || math.Abs(c.PoolWeight[i]-w.Pool) > 1e-9 {
			t.Errorf("prompt %d: page's cache pool %d weights %v/%v, native %d %+v", i+1, c.Pool[i], c.Own[i], c.PoolWeight[i], g, w)
		}
		if b := got.Runs[1].Results[i].Tokens; !slices.Equal(b, gens[i].Tokens) {
			t.Errorf("prompt %d with the token cache: browser tokens %v, native %v", i+1, b, gens[i].Tokens)
		}
	}
	if !differs {
		t.Error("the token cache changed no token of the adapted run: the test does not exercise it")
	}
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
// (Over 80 lines: the page's whole sequence as a person clicks it, in order.)
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
