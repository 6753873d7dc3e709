//go:build !js

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
	"github.com/chameleon-llm/chameleon/serve"
)

// The fault tests' browser harness: a small model with a hyper-network,
// the demo server (optionally wrapped to misbehave) on loopback, and one
// headless Chromium with WebGPU on SwiftShader, as TestDemoInBrowser runs it.

// saveDemoModel writes the browser tests' model into a temporary
// directory: GPT-2's vocabulary (so the embedded and the served tokenizer
// agree), context 64, random weights; it returns the directory, the
// config, the weights, the tokenizer and the model's identity for adapters.
func saveDemoModel(t *testing.T) (string, model.Config, []model.HostTensor, *tokenizer.Tokenizer, adapt.Base) {
	t.Helper()
	cfg := model.Config{VocabSize: 50257, NCtx: 64, NEmbd: 32, NHead: 2, NLayer: 2, LNEps: 1e-5}
	host := model.RandomInit(cfg, 7)
	dir := t.TempDir()
	tok, err := tokenizer.NewGPT2()
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
	return dir, cfg, host, tok, base
}

// faultDemoServer builds the wasm runtime and serves a small random model
// (GPT-2's vocabulary, context 64) with a random hyper-network.
func faultDemoServer(t *testing.T) *demoServer {
	t.Helper()
	root, ok := sourceRoot()
	if !ok {
		t.Fatal("not inside Chameleon's source tree")
	}
	wasmDir := t.TempDir()
	if err := buildWasm(context.Background(), goTool(), root, wasmDir); err != nil {
		t.Fatal(err)
	}
	dir, cfg, _, _, base := saveDemoModel(t)
	hc := adapt.DefaultHyper(cfg.NEmbd, cfg.VocabSize, 2)
	ad := &adapt.Adapter{
		Meta:    adapt.Meta{Kind: adapt.KindHyper, Rank: hc.Rank, Alpha: hc.Alpha, Hidden: hc.Hidden, Dropout: hc.Dropout, Base: base},
		Tensors: adapt.InitHyper(hc, 3),
	}
	if err := adapt.Save(filepath.Join(dir, "hyper.safetensors"), ad); err != nil {
		t.Fatal(err)
	}
	srv, err := newDemoServer(demoConfig{Model: os.DirFS(dir), Label: "fault model", WasmDir: wasmDir})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// demoBrowser is one Chromium tab on a served demo, with its console.
type demoBrowser struct {
	t       *testing.T
	ctx     context.Context
	url     string
	mu      sync.Mutex
	console []string
}

// openDemo serves h on loopback and opens it in headless Chromium; initJS,
// when not empty, runs in the page before its own scripts (to take
// WebGPU away, say). Everything is closed when the test ends.
func openDemo(t *testing.T, h http.Handler, initJS string) *demoBrowser {
	t.Helper()
	chrome := findChromium(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs, cl, err := serve.NewHTTPServer(h, ln, serve.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(cl) //nolint:errcheck // ends with Close
	t.Cleanup(func() { hs.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
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
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	b := &demoBrowser{t: t, ctx: bctx, url: "http://" + ln.Addr().String() + "/"}
	if err := chromedp.Listen(bctx, b.record); err != nil {
		t.Fatalf("starting chromium (%s): %v", chrome, err)
	}
	if initJS != "" {
		err := chromedp.Do(bctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: initJS})
			return err
		}))
		if err != nil {
			b.fail("adding the init script: %v", err)
		}
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(b.url)); err != nil {
		b.fail("opening the demo page: %v", err)
	}
	return b
}

// record keeps the console's messages and uncaught exceptions.
func (b *demoBrowser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *cdpruntime.EventConsoleAPICalled:
		var parts []string
		for _, a := range e.Args {
			parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
		}
		b.console = append(b.console, string(e.Type)+": "+strings.Join(parts, " "))
	case *cdpruntime.EventExceptionThrown:
		b.console = append(b.console, "exception: "+e.ExceptionDetails.Text+" "+exceptionText(e.ExceptionDetails))
	}
}

// fail stops the test with the browser's console.
func (b *demoBrowser) fail(format string, args ...any) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.t.Fatalf("%s\nbrowser console:\n  %s", fmt.Sprintf(format, args...), strings.Join(b.console, "\n  "))
}

// exceptions is the uncaught exceptions the page has thrown so far.
func (b *demoBrowser) exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range b.console {
		if strings.HasPrefix(l, "exception") {
			out = append(out, l)
		}
	}
	return out
}

// pageOutcome is how the page's start ended: ready, or the message shown.
type pageOutcome struct {
	Ready bool   `json:"ready"`
	Error string `json:"error"`
	Fatal string `json:"fatal"`
}

// settle waits until the page is ready or shows why it is not.
func (b *demoBrowser) settle() pageOutcome {
	b.t.Helper()
	st, err := chromedp.Run(b.ctx, chromedp.Poll[pageOutcome](
		`window.demo && (demo.ready || demo.error) ? {ready: demo.ready, error: demo.error || "",
			fatal: document.querySelector("#fatal").hidden ? "" : document.querySelector("#fatal").textContent} : null`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(2*time.Minute)))
	if err != nil {
		b.fail("the page neither became ready nor showed an error: %v", err)
	}
	return st
}

// eval evaluates js in the page, awaiting a promise it returns.
func eval[T any](b *demoBrowser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fail("evaluating %s: %v", js, err)
	}
	return v
}
