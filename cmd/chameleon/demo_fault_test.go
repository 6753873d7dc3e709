//go:build !js

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// The demo page and its wasm runtime under bad conditions, in real
// Chromium (WebGPU on SwiftShader): misused calls, edits while a run is
// going, corrupt downloads, a stale runtime, a browser without WebGPU.

// Calls with arguments of the wrong type fail on their own: before, a
// byte argument that was not a Uint8Array panicked inside the Go callback,
// which ends the Go program, so every later call on the page threw "Go
// program has already exited".
func TestDemoBrowserBadCalls(t *testing.T) {
	b := openDemo(t, faultDemoServer(t), "")
	if st := b.settle(); !st.Ready {
		b.fail("the page did not load: %s", st.Error)
	}
	calls := []string{
		`chameleon.load({config: "not bytes"})`,
		`chameleon.load({weights: {}})`,
		`chameleon.load({weights: [1, 2, 3]})`,
		`chameleon.load({config: 42, weights: null})`,
		`chameleon.generate({prompts: ["hi"], maxTokens: 1}, () => { throw new Error("callback failed"); })`,
		`chameleon.generate({prompts: ["hi", 7]})`,
		`chameleon.cluster({prompts: []})`,
	}
	for _, c := range calls {
		got := eval[string](b, fmt.Sprintf(`(async () => {
			try { const p = %s; if (!(p instanceof Promise)) return "no promise: " + p; await p; return "resolved"; }
			catch (e) { return "rejected: " + (e && e.message); } })()`, c))
		if !strings.HasPrefix(got, "rejected: ") || strings.Contains(got, "exited") {
			t.Errorf("%s: %s; want a rejected promise with its own message", c, got)
		}
	}
	if got := eval[string](b, `String(chameleon.tokenize(5))`); got != "null" {
		t.Errorf("tokenize(5) = %s, want null (not the tokens of a made-up string)", got)
	}
	n := eval[int](b, `chameleon.generate({prompts: ["The quick brown fox"], maxTokens: 2}).then((r) => r.results[0].tokens.length)`)
	if n != 2 {
		t.Errorf("a generation after the bad calls gave %d tokens, want 2", n)
	}
	if st := eval[string](b, `document.querySelector("#error").hidden ? "" : document.querySelector("#error").textContent`); st != "" {
		t.Errorf("the page shows %q after the bad calls", st)
	}
}

// "Generate with and without adaptation" runs both halves on the prompts
// and settings of the click: before, the adapted half re-read the page, so
// a prompt edited (or typed into an empty box) while the base half ran gave
// the two columns different prompts, or more sequences than rows (an
// exception in the stream callback). A second click while running is
// ignored.
func TestDemoBrowserEditDuringRun(t *testing.T) {
	b := openDemo(t, faultDemoServer(t), "")
	if st := b.settle(); !st.Ready {
		b.fail("the page did not load: %s", st.Error)
	}
	// The wrapper edits the page as a person would, right after the base
	// half has started, and clicks both generate buttons again.
	eval[bool](b, fmt.Sprintf(`(() => {
		const want = %s;
		const ts = [...document.querySelectorAll("#prompts textarea")];
		ts.forEach((t, i) => { t.value = i < want.length ? want[i] : ""; });
		document.querySelector("#max-tokens").value = "3";
		window.calls = [];
		const g = chameleon.generate;
		chameleon.generate = (o, cb) => {
			window.calls.push({prompts: o.prompts.slice(), maxTokens: o.maxTokens});
			const p = g(o, cb);
			if (!o.adapt) {
				ts[0].value = "an edited prompt";
				ts[ts.length - 1].value = "a prompt typed into the empty box";
				document.querySelector("#max-tokens").value = "5";
				document.querySelector("#gen-both").click();
				document.querySelector("#gen-base").click();
			}
			return p;
		};
		demo.last = null;
		document.querySelector("#gen-both").click();
		return ts.length > want.length;
	})()`, jsStrings(demoPrompts)))
	last := eval[lastRun](b, `new Promise((res) => { const w = () => (demo.last && demo.last.done ? res(demo.last) : setTimeout(w, 100)); w(); })`)
	type call struct {
		Prompts   []string `json:"prompts"`
		MaxTokens int      `json:"maxTokens"`
	}
	calls := eval[[]call](b, `window.calls`)
	if last.Error != "" || len(last.Runs) != 2 {
		b.fail("the run failed: %q (%d runs)", last.Error, len(last.Runs))
	}
	if len(calls) != 2 {
		t.Errorf("%d calls to generate, want 2 (the base and the adapted half; clicks while running ignored)", len(calls))
	}
	for i, c := range calls {
		if !slices.Equal(c.Prompts, demoPrompts) || c.MaxTokens != 3 {
			t.Errorf("call %d: prompts %q, max tokens %d; want the click's %q and 3", i+1, c.Prompts, c.MaxTokens, demoPrompts)
		}
	}
	for r, run := range last.Runs {
		if len(run.Results) != len(demoPrompts) {
			t.Errorf("run %d: %d results for %d prompts", r+1, len(run.Results), len(demoPrompts))
		}
	}
	if ex := b.exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions: %q", ex)
	}
}

// A weights file that arrives corrupt but whole (same length) is refused
// with a message, and is not kept in the browser's cache: before, the page
// loaded whatever bytes came and stored them under the content hash they
// did not have, so every reload read them back.
func TestDemoBrowserCorruptDownload(t *testing.T) {
	srv := faultDemoServer(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/model/model.safetensors" {
			srv.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK && len(body) > 0 {
			body[len(body)-1] ^= 0x40 // a flipped bit in the last weight
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body) //nolint:errcheck
	})
	b := openDemo(t, h, "")
	st := b.settle()
	if st.Ready {
		b.fail("the page loaded corrupt weights without a word")
	}
	if !strings.Contains(st.Fatal, "model.safetensors") || !strings.Contains(st.Fatal, "corrupt") {
		t.Errorf("message %q: want one naming model.safetensors as corrupt", st.Fatal)
	}
	cached := eval[[]string](b, `caches.open("chameleon-model").then((c) => c.keys()).then((ks) => ks.map((k) => k.url))`)
	for _, u := range cached {
		if strings.Contains(u, "model.safetensors") {
			t.Errorf("the corrupt weights were cached: %s", u)
		}
	}
}

// A runtime (chameleon.wasm) built from another version of the page than
// the server's is refused before the model is downloaded, with the fix:
// before, a stale runtime ran against the new page and failed, or quietly
// ignored options it did not know, somewhere later.
func TestDemoBrowserStaleRuntime(t *testing.T) {
	srv := faultDemoServer(t)
	var weights atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/model/model.safetensors":
			weights.Add(1)
		case "/model/manifest.json":
			// The server's page is another version than the runtime's.
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, r)
			var man map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &man); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			man["page"] = "0123456789abcdef"
			var buf bytes.Buffer
			json.NewEncoder(&buf).Encode(man) //nolint:errcheck
			w.Header().Set("Content-Type", "application/json")
			w.Write(buf.Bytes()) //nolint:errcheck
			return
		}
		srv.ServeHTTP(w, r)
	})
	b := openDemo(t, h, "")
	st := b.settle()
	if st.Ready {
		b.fail("the page ran a runtime built for another version of it")
	}
	if !strings.Contains(st.Fatal, "make wasm") {
		t.Errorf("message %q: want the fix (make wasm)", st.Fatal)
	}
	if n := weights.Load(); n != 0 {
		t.Errorf("the weights were requested %d times before the runtime was found stale", n)
	}
}

// A browser without WebGPU, without an adapter, or whose adapter refuses
// a device gets a message on the page that says so, with no uncaught
// exception and no hang.
func TestDemoBrowserNoWebGPU(t *testing.T) {
	srv := faultDemoServer(t)
	for _, c := range []struct{ name, init, want string }{
		{"no navigator.gpu", `Object.defineProperty(Navigator.prototype, "gpu", {get: () => undefined, configurable: true});`, "no WebGPU"},
		{"no adapter", `GPU.prototype.requestAdapter = async function () { return null; };`, "no GPU adapter"},
		{"no device", `GPUAdapter.prototype.requestDevice = function () { return Promise.reject(new Error("device refused")); };`, "device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := openDemo(t, srv, c.init)
			st := b.settle()
			if st.Ready || !strings.Contains(st.Fatal, c.want) {
				b.fail("ready %v, message %q: want one saying %q", st.Ready, st.Fatal, c.want)
			}
			if ex := b.exceptions(); len(ex) > 0 {
				t.Errorf("uncaught exceptions: %q", ex)
			}
			t.Logf("message: %s", st.Fatal)
		})
	}
}
