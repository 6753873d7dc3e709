// Command demoshot takes the README's screenshot of the browser demo on the
// embedded default model: it starts `bin/chameleon demo` (run `make build
// wasm` first), drives headless chromium (WebGPU on SwiftShader where there
// is no GPU) through a base-vs-adapted generation of a few mixed prompts,
// and writes the page as a PNG.
//
//	go run ./scripts/demoshot -out docs/demo.png
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"time"

	"github.com/chromedp/chromedp"
)

func main() {
	out := flag.String("out", "docs/demo.png", "PNG to write")
	addr := flag.String("addr", "127.0.0.1:8097", "address for the demo server")
	chrome := flag.String("chromium", "/usr/bin/chromium", "chromium binary")
	tokens := flag.Int("max-tokens", 12, "tokens per prompt")
	flag.Parse()

	srv := exec.Command("bin/chameleon", "demo", "--addr", *addr)
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		log.Fatalf("starting the demo server (make build wasm first): %v", err)
	}
	defer srv.Process.Kill() //nolint:errcheck // best effort at exit
	time.Sleep(2 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(*chrome), chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.Flag("headless", true), chromedp.NoSandbox,
		chromedp.Flag("enable-unsafe-webgpu", true), chromedp.Flag("enable-features", "Vulkan"),
		chromedp.WindowSize(1200, 1000))
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+*addr+"/")); err != nil {
		log.Fatal(err)
	}
	type state struct {
		Ready bool   `json:"ready"`
		Error string `json:"error"`
	}
	st, err := chromedp.Run(bctx, chromedp.Poll[state](`window.demo && (demo.ready || demo.error) ? {ready: demo.ready, error: demo.error || ""} : null`,
		chromedp.WithPollingInterval(500*time.Millisecond), chromedp.WithPollingTimeout(5*time.Minute)))
	if err != nil || !st.Ready {
		log.Fatalf("the page did not load the model: %v %s", err, st.Error)
	}
	// Four of the page's samples from the adaptation domains, which the
	// default hyper-network was trained on (the base model never saw them).
	prompts := []string{
		"def list_files(root, suffix=\".py\"):\n    \"\"\"Return the sorted paths under root.\"\"\"\n    found = []\n    for dirpath, dirnames, filenames in os.walk(root):",
		"Die Datei wird nur dann überschrieben, wenn die Option --force angegeben wurde. Andernfalls bricht das Programm",
		"(defun my-count-words (start end)\n  \"Count the words between START and END.\"\n  (interactive \"r\")\n  (let ((count 0))",
		"Fellow-Citizens of the Senate and House of Representatives:\n\nIn meeting you again I have the satisfaction of informing you that",
	}
	js, _ := json.Marshal(prompts)
	set := fmt.Sprintf(`(() => { const want = %s; const ts = [...document.querySelectorAll("#prompts textarea")];
		while (ts.length < want.length) { document.querySelector("#add-prompt")?.click(); ts.splice(0, ts.length, ...document.querySelectorAll("#prompts textarea")); if (ts.length < want.length && !document.querySelector("#add-prompt")) break; }
		ts.forEach((t, i) => { t.value = i < want.length ? want[i] : ""; }); return ts.length >= want.length; })()`, js)
	ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](set))
	if err != nil || !ok {
		log.Fatalf("filling the prompts: %v %v", err, ok)
	}
	if err := chromedp.Do(bctx, chromedp.SetValue("#max-tokens", fmt.Sprint(*tokens)), chromedp.SetValue("#temperature", "0"),
		chromedp.SetValue("#clusters", "3"), chromedp.Click("#gen-both")); err != nil {
		log.Fatal(err)
	}
	type last struct {
		Done  bool   `json:"done"`
		Error string `json:"error"`
	}
	l, err := chromedp.Run(bctx, chromedp.Poll[last](`demo.last && demo.last.done ? {done: true, error: demo.last.error || ""} : null`,
		chromedp.WithPollingInterval(time.Second), chromedp.WithPollingTimeout(12*time.Minute)))
	if err != nil || l.Error != "" {
		log.Fatalf("generating: %v %s", err, l.Error)
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, png, 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", *out)
}
