//go:build !js

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// stopOutcome is what TestDemoBrowserStop reads back from the page.
type stopOutcome struct {
	EnabledWhileRunning bool     `json:"enabledWhileRunning"`
	DisabledAfter       bool     `json:"disabledAfter"`
	Tokens              []int    `json:"tokens"`
	Finish              []string `json:"finish"`
	Stopped             bool     `json:"stopped"`
	Stats               string   `json:"stats"`
	Marks               int      `json:"marks"`
	Error               string   `json:"error"`
}

// Stop ends a long generation early: the page's Stop button (enabled only
// while a run goes) calls chameleon.stop(), whose running generate resolves
// with the tokens so far, each sequence finished "cancelled", and the page
// says the run was stopped. stop() with nothing running does nothing, and
// a stop does not carry over into the next generation.
func TestDemoBrowserStop(t *testing.T) {
	b := openDemo(t, faultDemoServer(t), "")
	if st := b.settle(); !st.Ready {
		b.fail("the page did not load: %s", st.Error)
	}
	if got := eval[string](b, `String(chameleon.stop()) + " " + document.querySelector("#stop").disabled`); got != "false true" {
		t.Errorf("idle: stop() and the Stop button's disabled = %s, want false true", got)
	}
	// The API: stop() called from the stream callback, inside the run.
	got := eval[string](b, `chameleon.generate({prompts: ["The quick brown fox"], maxTokens: 50}, () => chameleon.stop())
		.then((r) => r.results[0].finish + " " + r.results[0].tokens.length)`)
	if f := strings.Fields(got); len(f) != 2 || f[0] != "cancelled" || f[1] == "50" {
		t.Errorf("generate stopped from its callback: %s, want cancelled with fewer than 50 tokens", got)
	}
	if n := eval[string](b, `chameleon.generate({prompts: ["The quick brown fox"], maxTokens: 3}).then((r) => r.results[0].finish + " " + r.results[0].tokens.length)`); n != "length 3" {
		t.Errorf("the generation after a stopped one: %s, want length 3", n)
	}
	// The page: a person clicks Stop once the first text has streamed; in
	// "with and without adaptation", stopping the base half skips the other.
	for _, button := range []string{"gen-base", "gen-both"} {
		out := clickStop(b, button)
		t.Logf("%s stopped after %v tokens: %s", button, out.Tokens, out.Stats)
		if !out.EnabledWhileRunning || !out.DisabledAfter {
			t.Errorf("%s: Stop enabled while running %v, disabled after %v; want both", button, out.EnabledWhileRunning, out.DisabledAfter)
		}
		if len(out.Tokens) != 1 || out.Tokens[0] >= 56 || out.Finish[0] != "cancelled" {
			t.Errorf("%s: the stopped run gave tokens %v finish %v; want one run of one sequence, cancelled with fewer than 56 tokens", button, out.Tokens, out.Finish)
		}
		if !out.Stopped || !strings.Contains(out.Stats, "stopped") || out.Marks != 1 {
			t.Errorf("%s: the page does not show the run was stopped: stopped %v, stats %q, %d marks", button, out.Stopped, out.Stats, out.Marks)
		}
	}
	if ex := b.exceptions(); len(ex) > 0 {
		b.fail("uncaught exceptions: %v", ex)
	}
}

// clickStop starts a long generation with the page's button id and clicks
// Stop once the first text has streamed; it returns what the page shows.
func clickStop(b *demoBrowser, button string) stopOutcome {
	b.t.Helper()
	eval[bool](b, `(() => {
		const ts = [...document.querySelectorAll("#prompts textarea")];
		ts.forEach((t, i) => { t.value = i === 0 ? "Once upon a time" : ""; });
		document.querySelector("#max-tokens").value = "56";
		window.stopCheck = {};
		const g = window.plainGenerate = window.plainGenerate || chameleon.generate;
		chameleon.generate = (o, cb) => g(o, (seq, text) => {
			cb(seq, text);
			if (window.stopCheck.clicked) return;
			window.stopCheck.clicked = true;
			setTimeout(() => {
				window.stopCheck.enabled = !document.querySelector("#stop").disabled;
				document.querySelector("#stop").click();
			}, 0);
		});
		document.querySelector("#`+button+`").click();
		return true;
	})()`)
	out, err := chromedp.Run(b.ctx, chromedp.Poll[stopOutcome](`demo.last && demo.last.done ? {
		enabledWhileRunning: !!window.stopCheck.enabled,
		disabledAfter: document.querySelector("#stop").disabled,
		tokens: (demo.last.runs || []).flatMap((r) => r.results.map((x) => x.tokens.length)),
		finish: (demo.last.runs || []).flatMap((r) => r.results.map((x) => x.finish)),
		stopped: !!demo.last.stopped,
		stats: document.querySelector("#stats").textContent,
		marks: document.querySelectorAll("#outputs .stopped").length,
		error: demo.last.error || demo.error || ""} : null`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(2*time.Minute)))
	if err != nil {
		b.fail("the stopped run (%s) did not end: %v", button, err)
	}
	if out.Error != "" {
		b.fail("the stopped run (%s) failed: %s", button, out.Error)
	}
	return out
}
