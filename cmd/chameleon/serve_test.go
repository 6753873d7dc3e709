package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/model"
)

// runServe runs `chameleon serve` in-process until ctx ends; it returns
// the address it announced and a channel with the command's result.
func runServe(t *testing.T, ctx context.Context, args ...string) (string, chan error) {
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
	go func() {
		re := regexp.MustCompile(`http://(\S+)`)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			t.Log(sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return a, done
	case err := <-done:
		t.Fatalf("serve exited: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not announce its address")
	}
	return "", nil
}

func TestCLIServe(t *testing.T) {
	nomodel := serveCmd()
	nomodel.SetArgs([]string{})
	nomodel.SetOut(io.Discard)
	nomodel.SetErr(io.Discard)
	if err := nomodel.Execute(); err == nil || !strings.Contains(err.Error(), "serve needs --model") {
		t.Errorf("serve without --model: %v", err)
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
