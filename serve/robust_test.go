package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// gatedServer serves the tiny model on the reference backend behind a gate:
// each forward step waits for a token on g.gate.
func gatedServer(t *testing.T, opt Options) (*Server, string, *gated) {
	m, tok := tinyModel(t, ref.New())
	g := newGated(Base{m}, true)
	s, url := testServer(t, g, tok, opt)
	t.Cleanup(g.open) // let any step still waiting finish (runs before the server's cleanup)
	return s, url, g
}

// A full queue answers 429 with Retry-After; the queued request is then served.
func TestServeQueueFull(t *testing.T) {
	s, url, g := gatedServer(t, Options{Slots: 1, Queue: 1, RetryAfter: 2 * time.Second})
	ctx := context.Background()
	var wg sync.WaitGroup
	res := make([]reply, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = post(ctx, t, url, `{"prompt":"hi","max_tokens":2}`)
		}()
		// The first is admitted (its step waits at the gate), the second queued.
		waitFor(t, 5*time.Second, "the request to be taken", func() bool {
			st := s.Scheduler().Stats()
			return st.Running+st.Queued == i+1
		})
	}
	r := post(ctx, t, url, `{"prompt":"hi","max_tokens":2}`)
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "2" || r.Err.Code == nil || *r.Err.Code != "queue_full" {
		t.Errorf("full queue: %d, Retry-After %q: %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	g.open()
	wg.Wait()
	for i, r := range res {
		if r.Status != 200 {
			t.Errorf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
}

// A client that disconnects frees its slot at the next step, streaming or
// not, running or queued.
func TestServeCancelFreesSlot(t *testing.T) {
	s, url, g := gatedServer(t, Options{Slots: 1, Queue: 4})
	stop := make(chan struct{})
	defer close(stop)
	go func() { // about 100 steps a second
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				g.allow(1)
			}
		}
	}()
	for _, stream := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan reply)
		go func() {
			done <- post(ctx, t, url, map[string]any{"prompt": "hi", "max_tokens": 200, "stream": stream})
		}()
		// A second request waits behind it and is cancelled while queued.
		qctx, qcancel := context.WithCancel(context.Background())
		qdone := make(chan reply)
		waitFor(t, 5*time.Second, "the first request to run", func() bool { return s.Scheduler().Stats().Running == 1 })
		go func() { qdone <- post(qctx, t, url, `{"prompt":"hi","max_tokens":5}`) }()
		waitFor(t, 5*time.Second, "the second request to queue", func() bool { return s.Scheduler().Stats().Queued == 1 })
		qcancel()
		<-qdone
		waitFor(t, 5*time.Second, "the queued request to leave", func() bool { return s.Scheduler().Stats().Queued == 0 })
		steps := s.Scheduler().Stats().Steps
		cancel()
		<-done
		waitFor(t, 5*time.Second, "the slot to be freed", func() bool { return s.Scheduler().Stats().Running == 0 })
		if n := s.Scheduler().Stats().Steps - steps; n > 3 {
			t.Errorf("stream %v: %d steps ran after the client left", stream, n)
		}
	}
	// The freed slot serves the next request.
	if r := post(context.Background(), t, url, `{"prompt":"hi","max_tokens":2}`); r.Status != 200 {
		t.Errorf("after cancellations: %d %s", r.Status, r.Body)
	}
	_, body := get(t, url+"/metrics")
	if !strings.Contains(body, "chameleon_cancelled_requests_total 4") {
		t.Errorf("metrics do not count 4 cancellations:\n%s", grepLines(body, "cancelled"))
	}
	if !strings.Contains(body, `chameleon_requests_total{code="499"} 4`) || !strings.Contains(body, `chameleon_requests_total{code="200"} 1`) {
		t.Errorf("requests_total does not count the 4 cancellations as 499:\n%s", grepLines(body, "requests_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A lost device fails the running and queued requests with 503 (an error
// event in a stream), /healthz reports it, and later requests get 503.
func TestServeDeviceLost(t *testing.T) {
	m, tok := tinyModel(t, ref.New())
	g := newGated(Base{m}, false)
	g.fail = func(step int) error {
		if step >= 3 {
			return fmt.Errorf("gpu: flush: %w: simulated", gpu.ErrDeviceLost)
		}
		return nil
	}
	s, url := testServer(t, g, tok, Options{Slots: 1, Queue: 4})
	ctx := context.Background()
	var wg sync.WaitGroup
	res := make([]reply, 3)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = post(ctx, t, url, map[string]any{"prompt": "hi", "max_tokens": 50, "stream": i == 0})
		}()
	}
	wg.Wait()
	for i, r := range res {
		if i == 0 && r.Status == 200 { // the stream had begun: an error event, no [DONE]
			if st := parseStream(t, r.Body); st.Done || !strings.Contains(st.Error, "device lost") {
				t.Errorf("stream after device loss: %s", r.Body)
			}
			continue
		}
		if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Err.Message, "device lost") {
			t.Errorf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	if code, body := get(t, url+"/healthz"); code != 503 || !strings.Contains(body, "device lost") {
		t.Errorf("healthz after loss: %d %s", code, body)
	}
	if r := post(ctx, t, url, `{"prompt":"hi","max_tokens":2}`); r.Status != 503 {
		t.Errorf("request after loss: %d %s", r.Status, r.Body)
	}
	if err := s.Scheduler().Health(); !errors.Is(err, gpu.ErrDeviceLost) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Health: %v", err)
	}
	if _, body := get(t, url+"/metrics"); !strings.Contains(body, "chameleon_device_healthy 0") {
		t.Errorf("metrics: device_healthy not 0")
	}
}

// Shutdown lets in-flight requests finish within the deadline and refuses
// new ones; past the deadline the rest fail with 503.
func TestServeShutdown(t *testing.T) {
	for _, finish := range []bool{true, false} {
		t.Run(fmt.Sprintf("finish=%v", finish), func(t *testing.T) {
			s, url, g := gatedServer(t, Options{Slots: 1, Queue: 4})
			ctx := context.Background()
			var wg sync.WaitGroup
			res := make([]reply, 2)
			for i := range res {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res[i] = post(ctx, t, url, map[string]any{"prompt": "hi", "max_tokens": 3, "stream": i == 1})
				}()
			}
			waitFor(t, 5*time.Second, "both requests", func() bool {
				st := s.Scheduler().Stats()
				return st.Running+st.Queued == 2
			})
			deadline := 200 * time.Millisecond
			if finish {
				deadline = 20 * time.Second
				g.allow(6)
			}
			sctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			shut := make(chan error)
			go func() { shut <- s.Shutdown(sctx) }()
			waitFor(t, 5*time.Second, "draining", func() bool { return s.Scheduler().Health() != nil })
			if r := post(ctx, t, url, `{"prompt":"hi","max_tokens":2}`); r.Status != 503 {
				t.Errorf("request while shutting down: %d %s", r.Status, r.Body)
			}
			if !finish {
				// Only once Shutdown has aborted: a permit given before
				// (a loaded machine can run the test's sleep past the
				// deadline's timer) let the loop start a second step,
				// which waited for a permit forever.
				select {
				case <-s.Scheduler().abort:
				case <-time.After(10 * time.Second):
					t.Fatal("Shutdown did not abort 10 s after its deadline")
				}
				g.allow(1) // the step in flight completes
			}
			err := <-shut
			wg.Wait()
			if finish {
				if err != nil {
					t.Errorf("Shutdown: %v", err)
				}
				if res[0].Status != 200 || res[0].C.Usage.CompletionTokens != 3 {
					t.Errorf("in-flight request: %d %s", res[0].Status, res[0].Body)
				}
				if st := parseStream(t, res[1].Body); !st.Done || st.Finish[0] != "length" {
					t.Errorf("in-flight stream: %s", res[1].Body)
				}
				return
			}
			if err == nil {
				t.Errorf("Shutdown past its deadline returned nil")
			}
			for i, r := range res {
				ok := r.Status == 503
				if r.Status == 200 && i == 1 {
					st := parseStream(t, r.Body)
					ok = !st.Done && strings.Contains(st.Error, "shutting down")
				}
				if !ok {
					t.Errorf("request %d after the deadline: %d %s", i, r.Status, r.Body)
				}
			}
		})
	}
}
