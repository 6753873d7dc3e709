package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/serve"
)

// runServe runs `chameleon serve` in-process until ctx ends; it returns
// the address it announced and a channel with the command's result.
func runServe(t *testing.T, ctx context.Context, args ...string) (string, chan error) {
	t.Helper()
	addr, done, _ := runServeLog(t, ctx, args...)
	return addr, done
}

// runServeLog is runServe that also returns the log written up to the
// address's announcement.
func runServeLog(t *testing.T, ctx context.Context, args ...string) (string, chan error, string) {
	t.Helper()
	c := serveCmd()
	c.SetArgs(args)
	pr, pw := io.Pipe()
	c.SetErr(pw)
	c.SetOut(io.Discard)
	done := make(chan error, 1)
	go func() {
		err := c.ExecuteContext(ctx)
		pw.Close()
		done <- err
	}()
	addr := make(chan string, 1)
	var log strings.Builder
	go func() {
		re := regexp.MustCompile(`http://(\S+)`)
		sc := bufio.NewScanner(pr)
		announced := false // log is read once the address is out: stop writing it
		for sc.Scan() {
			t.Log(sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil && !announced {
				announced = true
				addr <- m[1]
			} else if !announced {
				log.WriteString(sc.Text() + "\n")
			}
		}
	}()
	select {
	case a := <-addr:
		return a, done, log.String()
	case err := <-done:
		t.Fatalf("serve exited: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not announce its address")
	}
	return "", nil, ""
}

func TestCLIServe(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-model")
	nomodel := serveCmd()
	nomodel.SetArgs([]string{"--model", missing})
	nomodel.SetOut(io.Discard)
	nomodel.SetErr(io.Discard)
	if err := nomodel.Execute(); err == nil || !strings.Contains(err.Error(), "no-such-model") {
		t.Errorf("serve with a missing --model: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "tiny")
	cfg := model.Configs["tiny"]
	if err := model.SaveHF(dir, cfg, model.RandomInit(cfg, 3), "f32"); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	addr, done := runServe(t, ctx, "--model", dir, "--cpu", "--addr", "127.0.0.1:0", "--slots", "2", "--grace", "20s")
	url := "http://" + addr

	resp, err := http.Post(url+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt":"The quick brown fox","max_tokens":4,"temperature":0}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"model":"tiny"`) || !strings.Contains(string(body), `"completion_tokens":4`) {
		t.Fatalf("completion: %d %s", resp.StatusCode, body)
	}

	// A stream in flight when the server is told to stop still finishes.
	resp, err = http.Post(url+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt":"Once upon a time","max_tokens":30,"temperature":0,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: {") {
		t.Fatalf("first stream line %q: %v", line, err)
	}
	stop() // as SIGTERM does
	rest, _ := io.ReadAll(r)
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") || !strings.Contains(string(rest), `"finish_reason":"length"`) {
		t.Errorf("stream cut by shutdown:\n%s", rest)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Errorf("the server still answers after stopping")
	}
}

// serve --adapter: none; the default (none embedded in this build: no
// adaptation, said in the log); a file made for the model (requests are
// adapted unless "adapt": false); a file made for another model (refused,
// naming the difference).
// (Over 80 lines: one server started with an adapter, then each request checked.)
func TestCLIServeAdapter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tiny")
	cfg := model.Configs["tiny"]
	host := model.RandomInit(cfg, 3)
	if err := model.SaveHF(dir, cfg, host, "f32"); err != nil {
		t.Fatal(err)
	}
	hyper := func(base adapt.Base, name string) string {
		hc := adapt.DefaultHyper(cfg.NEmbd, cfg.VocabSize, 2)
		ts := adapt.InitHyper(hc, 1)
		cents := make([]float32, 2*cfg.NEmbd)
		cents[0], cents[cfg.NEmbd+1] = 1, 1 // two unit vectors
		ts = append(ts, model.HostTensor{Name: adapt.CentroidsTensor, Shape: []int{2, cfg.NEmbd}, Data: cents})
		a := &adapt.Adapter{Meta: adapt.Meta{Kind: adapt.KindHyper, Rank: 2, Alpha: 1, Hidden: hc.Hidden, Dropout: hc.Dropout,
			Centroids: 2, Base: base}, Tensors: ts}
		path := filepath.Join(t.TempDir(), name)
		if err := adapt.Save(path, a); err != nil {
			t.Fatal(err)
		}
		return path
	}
	base, err := adapt.BaseOf(cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	otherBase, err := adapt.BaseOf(cfg, model.RandomInit(cfg, 4))
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := hyper(base, "mine.safetensors"), hyper(otherBase, "theirs.safetensors")

	complete := func(url, body string) (int, string) {
		resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	serveWith := func(adapter string, check func(url, log string)) {
		ctx, stop := context.WithCancel(context.Background())
		args := []string{"--model", dir, "--cpu", "--addr", "127.0.0.1:0", "--slots", "2"}
		if adapter != "" {
			args = append(args, "--adapter", adapter)
		}
		addr, done, log := runServeLog(t, ctx, args...)
		check("http://"+addr, log)
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve --adapter %q: %v", adapter, err)
		}
	}

	serveWith("none", func(url, log string) {
		if !strings.Contains(log, "adaptation off") {
			t.Errorf("--adapter none: log %q", log)
		}
		if code, body := complete(url, `{"prompt":"hi","max_tokens":1,"adapt":true}`); code != 400 {
			t.Errorf("adapt true without an adapter: %d %s", code, body)
		}
	})
	serveWith("", func(url, log string) {
		_, err := defaults.Hyper()
		switch {
		case errors.Is(err, defaults.ErrMissing) && !strings.Contains(log, "no default hyper-network is embedded"):
			t.Errorf("default adapter missing from the build: log %q", log)
		case err == nil && !strings.Contains(log, "does not fit this model"): // the default is for the default model
			t.Errorf("default adapter for another model: log %q", log)
		}
		if code, body := complete(url, `{"prompt":"hi","max_tokens":1}`); code != 200 {
			t.Errorf("no adaptation: %d %s", code, body)
		}
	})
	serveWith(mine, func(url, log string) {
		if !strings.Contains(log, "adapting with "+mine) || !strings.Contains(log, "online assignment to 2 training centroids") {
			t.Errorf("--adapter FILE: log %q", log)
		}
		for _, body := range []string{`{"prompt":"hi","max_tokens":2}`, `{"prompt":"hi","max_tokens":2,"adapt":false}`} {
			if code, resp := complete(url, body); code != 200 {
				t.Errorf("%s: %d %s", body, code, resp)
			}
		}
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{`chameleon_sequences_total{adaptation="adapted"} 1`, `chameleon_sequences_total{adaptation="base"} 1`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})

	c := serveCmd()
	c.SetArgs([]string{"--model", dir, "--cpu", "--addr", "127.0.0.1:0", "--adapter", theirs})
	c.SetOut(io.Discard)
	c.SetErr(io.Discard)
	if err := c.Execute(); err == nil || !strings.Contains(err.Error(), "wte fingerprint") || !strings.Contains(err.Error(), "theirs.safetensors") {
		t.Errorf("an adapter for another model: %v", err)
	}
}

// Flag values that cannot be honoured are refused with a message naming
// the flag, before anything is loaded; --queue 0 means no queue.
func TestServeFlagsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--queue", "-1"}, {"--slots", "-5"}, {"--slots", "0"}, {"--max-n", "0"}, {"--max-body", "0"},
		{"--prefill-chunk", "0"}, {"--max-tokens", "-1"}, {"--cluster-size", "-2"}, {"--grace", "-1s"},
		{"--body-timeout", "0s"}, {"--idle-timeout", "-1s"}, {"--write-timeout", "0s"}, {"--max-conns", "-1"},
		{"--cache-window", "4"}, {"--cache-radius", "-1", "--cache"}, {"--cache-clusters", "-1", "--cache"},
		{"--cache-keys", "100"}, {"--cache-keys", "-1", "--cache"}, {"--cache-keys", "100", "--cache", "--cache-neural=false"},
	} {
		c := serveCmd()
		c.SetArgs(append(args, "--addr", "127.0.0.1:0"))
		c.SetErr(io.Discard)
		c.SetOut(io.Discard)
		err := c.Execute()
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("serve %v: %v, want an error naming %s", args, err, args[0])
		}
	}
	opt := serve.Options{Slots: 2, Queue: 0, PrefillChunk: 1, MaxN: 1, MaxBodyBytes: 1}
	if err := checkServeFlags(&opt, serve.AdaptOptions{}, 0); err != nil || opt.Queue != serve.NoQueue {
		t.Errorf("--queue 0: %v, queue %d, want serve.NoQueue", err, opt.Queue)
	}
}

// --cache brings the neural cache unless --cache-neural=false; without
// --cache the flag's default is no request for it.
func TestServeCacheNeuralDefault(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{{[]string{"--cache"}, true}, {[]string{"--cache", "--cache-neural=false"}, false}, {nil, false}} {
		cmd := serveCmd()
		if err := cmd.ParseFlags(c.args); err != nil {
			t.Fatal(err)
		}
		opt := serve.Options{Slots: 1, Queue: 1, PrefillChunk: 1, MaxN: 1, MaxBodyBytes: 1}
		opt.Cache, _ = cmd.Flags().GetBool("cache")
		opt.CacheNeural, _ = cmd.Flags().GetBool("cache-neural")
		if err := checkServeFlags(&opt, serve.AdaptOptions{}, 0); err != nil || opt.CacheNeural != c.want {
			t.Errorf("%v: %v, neural %v, want %v", c.args, err, opt.CacheNeural, c.want)
		}
	}
}
