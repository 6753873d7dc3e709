package serve

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// guardedServer serves h through NewHTTPServer on loopback; it returns the
// address and the capped listener.
func guardedServer(t *testing.T, h http.Handler, lim Limits) (string, *capListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs, cl, err := NewHTTPServer(h, ln, lim)
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(cl) //nolint:errcheck // ends with Close
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), cl.(*capListener)
}

// apiServer is the tiny reference model's API behind the guard.
func apiServer(t *testing.T, opt Options, lim Limits) (*Server, string, *capListener) {
	t.Helper()
	m, tok := tinyModel(t, ref.New())
	s, err := New(Base{m}, tok, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	addr, cl := guardedServer(t, s, lim)
	return s, addr, cl
}

// slowBody opens a connection that sends a completion's headers and then
// trickles its body a byte every 100 ms (a slowloris); it returns the
// connection, whose reads give the server's answer.
func slowBody(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", addr)
	go func() {
		for {
			time.Sleep(100 * time.Millisecond)
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	return c
}

// healthz asks /healthz on a fresh connection.
func healthz(addr string, timeout time.Duration) (int, error) {
	cl := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	return resp.StatusCode, nil
}

// A body that does not arrive within BodyTimeout gets 408 and the
// connection is closed, however slowly the client keeps trickling.
func TestSlowBodyTimesOut(t *testing.T) {
	_, addr, _ := apiServer(t, Options{}, Limits{BodyTimeout: 300 * time.Millisecond})
	t0 := time.Now()
	c := slowBody(t, addr)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a trickled body: %v", err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("trickled body: status %d, want 408", resp.StatusCode)
	}
	if d := time.Since(t0); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("answered after %v; the body timeout is 300 ms", d)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the connection stays open after the timeout")
	}
}

// An idle keep-alive connection is closed after IdleTimeout.
func TestIdleConnectionReaped(t *testing.T) {
	_, addr, cl := apiServer(t, Options{}, Limits{IdleTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	t0 := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF (closed by the server)", err)
	}
	if d := time.Since(t0); d < 250*time.Millisecond {
		t.Errorf("closed after %v idle; the idle timeout is 300 ms", d)
	}
	waitFor(t, 2*time.Second, "the listener to forget the connection", func() bool { return cl.open() == 0 })
}

// A stream that lasts longer than the body timeout is not cut by it: the
// read deadline is lifted once the body is in.
func TestStreamOutlivesBodyTimeout(t *testing.T) {
	m, tok := tinyModel(t, ref.New())
	g := newGated(Base{m}, true)
	s, err := New(g, tok, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.open(); s.Shutdown(context.Background()) })
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a step every 40 ms: 25 tokens take a second
		for {
			select {
			case <-stop:
				return
			case <-time.After(40 * time.Millisecond):
				g.allow(1)
			}
		}
	}()
	addr, _ := guardedServer(t, s, Limits{BodyTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t0 := time.Now()
	r := post(context.Background(), t, "http://"+addr, map[string]any{"prompt": "hi", "max_tokens": 25, "stream": true, "temperature": 0})
	st := parseStream(t, r.Body)
	if r.Status != 200 || !st.Done || st.Finish[0] != "length" {
		t.Fatalf("stream of %v: status %d, done %v, finish %q, error %q", time.Since(t0), r.Status, st.Done, st.Finish[0], st.Error)
	}
	if d := time.Since(t0); d < 500*time.Millisecond {
		t.Errorf("the stream took %v: not longer than the timeouts, the test proves nothing", d)
	}
}

// At the connection cap, idle and silent connections, and those still
// trickling their request, make room for a new one: /healthz answers at
// once behind 20 idle or silent connections, and behind as many trickled
// bodies as the cap.
func TestConnCapKeepsHealthz(t *testing.T) {
	const max = 6
	_, addr, cl := apiServer(t, Options{}, Limits{MaxConns: max, BodyTimeout: time.Minute, IdleTimeout: time.Minute, HeaderTimeout: time.Minute})
	var attackers []net.Conn
	defer func() {
		for _, c := range attackers {
			c.Close()
		}
	}()
	// 10 idle keep-alive connections and 10 that send nothing.
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		attackers = append(attackers, c)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil && i < max {
			t.Fatalf("keep-alive connection %d: %v", i, err)
		}
		if err == nil {
			resp.Body.Close()
		}
	}
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		attackers = append(attackers, c)
	}
	time.Sleep(2 * silentAge)
	t0 := time.Now()
	if code, err := healthz(addr, 2*time.Second); err != nil || code != 200 {
		t.Fatalf("healthz behind 20 idle or silent connections: %d %v", code, err)
	}
	t.Logf("healthz behind idle connections: %v", time.Since(t0))
	if n := cl.open(); n > max {
		t.Errorf("%d connections open, cap %d", n, max)
	}

	// Every slot taken by a trickled body (the body timeout is a minute):
	// the oldest makes room.
	for i := 0; i < max; i++ {
		slowBody(t, addr)
	}
	time.Sleep(2 * silentAge)
	t0 = time.Now()
	if code, err := healthz(addr, 2*time.Second); err != nil || code != 200 {
		t.Fatalf("healthz behind %d trickled bodies: %d %v", max, code, err)
	}
	t.Logf("healthz behind trickled bodies: %v", time.Since(t0))
	if n := cl.open(); n > max {
		t.Errorf("%d connections open, cap %d", n, max)
	}
}

// victim picks an idle connection first, then the oldest one silent or
// still sending its request for silentAge, and never one at work.
func TestCapVictim(t *testing.T) {
	l := newCapListener(nil, 8)
	now := time.Now()
	add := func(st http.ConnState, age time.Duration, busy bool) *capConn {
		c := &capConn{l: l, state: st, since: now.Add(-age), busy: busy}
		l.conns[c] = struct{}{}
		return c
	}
	add(http.StateActive, time.Hour, true)                // generating: never
	add(http.StateNew, silentAge/2, false)                // just accepted: not yet
	slowBody := add(http.StateActive, time.Second, false) // trickling for a second
	silent := add(http.StateNew, 2*time.Second, false)    // silent for two
	idle := add(http.StateIdle, time.Millisecond, false)  // idle: first, however young
	for _, want := range []*capConn{idle, silent, slowBody, nil} {
		got := l.victim()
		if got != want {
			t.Fatalf("victim %+v, want %+v", got, want)
		}
		delete(l.conns, got)
	}
}

// The descriptor limit bounds the default connection cap.
func TestMaxConnsFromDescriptorLimit(t *testing.T) {
	for _, c := range []struct{ fds, want int }{{0, DefaultMaxConns}, {128, 64}, {60, 4}, {1 << 20, DefaultMaxConns}} {
		if got := maxConnsFor(c.fds); got != c.want {
			t.Errorf("descriptor limit %d: cap %d, want %d", c.fds, got, c.want)
		}
	}
}

// On loopback only the loopback names (with the port) and the allowed
// hosts are answered: a page on another name that resolves to 127.0.0.1
// (DNS rebinding) gets 403.
func TestHostCheck(t *testing.T) {
	_, addr, _ := apiServer(t, Options{}, Limits{AllowedHosts: []string{"chameleon.lan"}})
	_, port, _ := net.SplitHostPort(addr)
	for host, want := range map[string]int{
		"127.0.0.1:" + port: 200, "localhost:" + port: 200, "[::1]:" + port: 200, "LocalHost:" + port: 200,
		"chameleon.lan:" + port: 200, "chameleon.lan": 200,
		"evil.example:" + port: 403, "evil.example": 403, "localhost:1": 403, "localhost": 403, "127.0.0.1.evil.example:" + port: 403,
	} {
		for _, path := range []string{"/healthz", "/v1/completions"} {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(`{"prompt":"hi","max_tokens":1}`))
			if path == "/healthz" {
				req, _ = http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("Host %q %s: %d %s, want %d", host, path, resp.StatusCode, b, want)
			}
		}
	}
	// Elsewhere than on loopback, any Host unless a list is given.
	any, err := allowedHosts(&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, nil)
	if err != nil || any != nil {
		t.Errorf("0.0.0.0 without a list: %v %v, want any host", any, err)
	}
	some, err := allowedHosts(&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, []string{"box.lan"})
	if err != nil || !some["box.lan:8080"] || some["localhost:8080"] {
		t.Errorf("0.0.0.0 with box.lan: %v %v", some, err)
	}
	if _, err := allowedHosts(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, []string{"http://x/"}); err == nil {
		t.Error("a URL as an allowed host is accepted")
	}
}

// A completion must be sent as JSON: text/plain and forms, which a page
// may post cross-origin without a preflight, get 415.
func TestCompletionsWantJSON(t *testing.T) {
	_, addr, _ := apiServer(t, Options{}, Limits{})
	for ct, want := range map[string]int{
		"application/json": 200, "application/json; charset=utf-8": 200, "Application/JSON; charset=UTF-8": 200,
		"": 415, "text/plain": 415, "text/plain;charset=UTF-8": 415, "application/x-www-form-urlencoded": 415,
		"multipart/form-data; boundary=x": 415, "application/json; charset=latin1": 415, "application/jsonx": 415,
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/completions", strings.NewReader(`{"prompt":"hi","max_tokens":1}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Content-Type %q: %d %s, want %d", ct, resp.StatusCode, b, want)
		}
	}
}
