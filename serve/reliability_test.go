package serve

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// A stream whose client disconnects after the first event is counted as
// requests_total{code="499"}, not as a 200, and its slot is freed.
func TestStreamDisconnectCounted(t *testing.T) {
	s, url, g := gatedServer(t, Options{Slots: 1})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				g.allow(1)
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/completions",
		strings.NewReader(`{"prompt":"hi","max_tokens":200,"stream":true}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first event: %q %v", line, err)
	}
	cancel() // the client leaves mid-stream
	resp.Body.Close()
	waitFor(t, 5*time.Second, "the slot to be freed", func() bool { return s.Scheduler().Stats().Running == 0 })
	if r := post(context.Background(), t, url, `{"prompt":"hi","max_tokens":2}`); r.Status != 200 {
		t.Fatalf("after the disconnect: %d %s", r.Status, r.Body)
	}
	var body string
	waitFor(t, 5*time.Second, "the metrics to count the disconnect", func() bool {
		_, body = get(t, url+"/metrics")
		return strings.Contains(body, `chameleon_requests_total{code="499"} 1`)
	})
	if !strings.Contains(body, `chameleon_requests_total{code="200"} 1`) {
		t.Errorf("the abandoned stream is counted as a success:\n%s", grepLines(body, "requests_total"))
	}
}

// With NoQueue a request is accepted only when free slots take it now
// (it joins them at the next step); else 429 at once. Requests for more choices than slots are refused.
func TestNoQueue(t *testing.T) {
	s, url, g := gatedServer(t, Options{Slots: 2, Queue: NoQueue})
	ctx := context.Background()
	var wg sync.WaitGroup
	res := make([]reply, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = post(ctx, t, url, `{"prompt":"hi","max_tokens":2}`)
		}()
		waitFor(t, 5*time.Second, "the request to run", func() bool {
			st := s.Scheduler().Stats()
			return st.Running+st.Queued == i+1
		})
	}
	r := post(ctx, t, url, `{"prompt":"hi","max_tokens":2}`)
	if r.Status != http.StatusTooManyRequests || !strings.Contains(r.Err.Message, "no queue") {
		t.Errorf("all slots busy, no queue: %d %s", r.Status, r.Body)
	}
	if r := post(ctx, t, url, `{"prompt":"hi","max_tokens":2,"n":3}`); r.Status != http.StatusBadRequest {
		t.Errorf("n 3 on 2 slots without a queue: %d %s", r.Status, r.Body)
	}
	g.open()
	wg.Wait()
	for i, r := range res {
		if r.Status != 200 {
			t.Errorf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	if r := post(ctx, t, url, `{"prompt":"hi","max_tokens":2,"n":2}`); r.Status != 200 {
		t.Errorf("once the slots are free: %d %s", r.Status, r.Body)
	}
}

// Options that cannot be honoured are refused, not replaced by defaults.
func TestOptionsRefused(t *testing.T) {
	m, tok := tinyModel(t, ref.New())
	for _, o := range []Options{{Slots: -5}, {Queue: -2}, {MaxN: -1}, {PrefillChunk: -1}, {MaxBodyBytes: -1},
		{Queue: NoQueue, Slots: 2, MaxChoices: 3}} {
		s, err := New(Base{m}, tok, o)
		if err == nil {
			s.Shutdown(context.Background())
			t.Errorf("%+v: accepted", o)
		} else {
			t.Logf("%+v: %v", o, err)
		}
	}
}
