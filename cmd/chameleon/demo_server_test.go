//go:build !js

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `chameleon demo` has the server's defences: a Host allow-list on
// loopback (DNS rebinding) and an idle timeout, on real loopback HTTP.
func TestDemoServerDefences(t *testing.T) {
	wasmDir := t.TempDir()
	for _, n := range []string{"chameleon.wasm", "wasm_exec.js"} {
		if err := os.WriteFile(filepath.Join(wasmDir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := demoCmd()
	c.SetArgs([]string{"--addr", "127.0.0.1:0", "--model", tinyModel(t), "--adapter", "none", "--wasm", wasmDir,
		"--idle-timeout", "300ms", "--allow-host", "demo.lan"})
	pr, pw := io.Pipe()
	c.SetErr(pw)
	c.SetOut(io.Discard)
	done := make(chan error, 1)
	go func() { done <- c.ExecuteContext(ctx); pw.Close() }()
	addrc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`http://([^/\s]+)/`)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("demo ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not announce its address")
	}
	_, port, _ := net.SplitHostPort(addr)
	for host, want := range map[string]int{"127.0.0.1:" + port: 200, "localhost:" + port: 200, "demo.lan:" + port: 200,
		"evil.example:" + port: 403, "localhost:1": 403} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/model/manifest.json", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %q: %d, want %d", host, resp.StatusCode, want)
		}
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	fmt.Fprintf(conn, "GET /model/manifest.json HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("manifest: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle keep-alive connection: read %v, want EOF (closed after the 300 ms idle timeout)", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("demo: %v", err)
	}
}

// Without a wasm runtime from `make wasm` the demo builds nothing: it stops
// and says how to make one.
func TestDemoWithoutWasm(t *testing.T) {
	t.Chdir(t.TempDir()) // no bin/wasm here
	if _, err := findWasm(""); err == nil || !strings.Contains(err.Error(), "make wasm") {
		t.Errorf("no bin/wasm: %v, want the hint to run make wasm", err)
	}
	if _, err := findWasm(t.TempDir()); err == nil || !strings.Contains(err.Error(), "make wasm") {
		t.Errorf("an empty --wasm: %v, want the hint to run make wasm", err)
	}
	wasmDir := filepath.Join("bin", "wasm")
	if err := os.MkdirAll(wasmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"chameleon.wasm", "wasm_exec.js"} {
		if err := os.WriteFile(filepath.Join(wasmDir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if dir, err := findWasm(""); err != nil || dir != wasmDir {
		t.Errorf("with bin/wasm: %q, %v", dir, err)
	}
}

// Every model file the demo answers with 200 hashes to its ETag: before, a
// file rewritten on disk after the start (a retrained model of the same
// shape, the same size) was served under the old hash, so the page cached
// the new bytes as the old ones and the adapter checked at startup no
// longer matched them. Now such a file is refused with 409 and the fix.
func TestDemoServerModelChanged(t *testing.T) {
	wasmDir := t.TempDir()
	for _, n := range []string{"chameleon.wasm", "wasm_exec.js"} {
		if err := os.WriteFile(filepath.Join(wasmDir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := tinyModel(t)
	srv, err := newDemoServer(demoConfig{Model: os.DirFS(dir), Adapter: "none", WasmDir: wasmDir})
	if err != nil {
		t.Fatal(err)
	}
	get := func(what string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/model/model.safetensors", nil))
		if rec.Code == http.StatusOK {
			sum := sha256.Sum256(rec.Body.Bytes())
			if etag := rec.Header().Get("ETag"); etag != `"`+hex.EncodeToString(sum[:])[:32]+`"` {
				t.Errorf("%s: served with ETag %s, but its content's hash is %x", what, etag, sum[:16])
			}
		}
		return rec
	}
	if rec := get("as started"); rec.Code != http.StatusOK {
		t.Fatalf("as started: %d %s", rec.Code, rec.Body)
	}
	path := filepath.Join(dir, "model.safetensors")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff // new weights, same size
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute) // a different mtime even on a coarse clock
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	rec := get("rewritten")
	if msg := rec.Body.String(); rec.Code != http.StatusConflict || !strings.Contains(msg, "restart") {
		t.Errorf("rewritten: %d %q, want 409 saying to restart the demo", rec.Code, msg[:min(len(msg), 120)])
	}
}
