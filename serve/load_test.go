package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// The load test: N concurrent clients x M requests on loopback, mixing
// greedy and seeded sampling, streaming and not, several choices,
// cancellations and bad requests. Every request must be answered (none
// lost), none with a 5xx, every valid one exactly as when it was served
// alone, and every cancelled one must free its slot. It logs the
// throughput of the concurrent phase against serving the same requests one
// at a time (a measurement, not an assertion).

// loadPrompts vary in length so that prefills mix with decodes.
var loadPrompts = []string{
	"The quick brown fox",
	"Once upon a time, in a land far away, there lived a king who had three daughters. The youngest was the cleverest of all, and",
	"def fibonacci(n):",
	"Q: What is the capital of France?\nA:",
}

var loadBad = []string{
	`{"prompt": "hi", "max_tokens": "many"}`,
	`{"prompt": "hi"`,
	`{"prompt": "", "max_tokens": 2}`,
	`{"prompt": "hi", "n": 99}`,
	`{"prompt": "hi", "max_tokens": 4, "surprise": true}`,
}

type loadReq struct {
	kind string // "valid", "bad", "cancel"
	body map[string]any
	raw  string // bad requests
}

// loadMix is request j of client c.
func loadMix(c, j, maxTokens int) loadReq {
	k := c*7 + j*3
	p := loadPrompts[k%len(loadPrompts)]
	switch (c + j) % 6 {
	case 0:
		return loadReq{kind: "valid", body: map[string]any{"prompt": p, "max_tokens": maxTokens, "temperature": 0}}
	case 1:
		return loadReq{kind: "valid", body: map[string]any{"prompt": p, "max_tokens": maxTokens, "temperature": 0, "stream": true}}
	case 2:
		return loadReq{kind: "valid", body: map[string]any{"prompt": p, "max_tokens": maxTokens, "temperature": 0.8, "top_k": 40, "seed": k}}
	case 3:
		return loadReq{kind: "valid", body: map[string]any{"prompt": p, "max_tokens": maxTokens, "temperature": 0.9, "top_p": 0.9, "seed": k, "n": 2, "stream": true}}
	case 4:
		return loadReq{kind: "bad", raw: loadBad[k%len(loadBad)]}
	}
	return loadReq{kind: "cancel", body: map[string]any{"prompt": p, "max_tokens": 100, "temperature": 0, "stream": true}}
}

// outcome is what a valid request produced: per choice text and finish.
type outcome struct {
	texts    []string
	finishes []string
	tokens   int
}

func (o outcome) String() string { return fmt.Sprintf("%q %v", o.texts, o.finishes) }

// do sends a valid request and returns its outcome.
func do(t testing.TB, url string, body map[string]any) (outcome, int) {
	if body["stream"] == true { // ask for the usage chunk to count tokens
		body = maps.Clone(body)
		body["stream_options"] = map[string]any{"include_usage": true}
	}
	r := post(context.Background(), t, url, body)
	if r.Status != 200 {
		return outcome{}, r.Status
	}
	var o outcome
	if body["stream"] == true {
		st := parseStream(t, r.Body)
		if !st.Done || st.Error != "" {
			t.Errorf("stream without [DONE] or with an error: %s", r.Body)
		}
		for i := 0; i < len(st.Text) || i < len(st.Finish); i++ {
			o.texts, o.finishes = append(o.texts, st.Text[i]), append(o.finishes, st.Finish[i])
		}
		if u := st.Chunks[len(st.Chunks)-1].Usage; u != nil {
			o.tokens = u.CompletionTokens
		}
	} else {
		for _, c := range r.C.Choices {
			o.texts, o.finishes = append(o.texts, c.Text), append(o.finishes, *c.FinishReason)
		}
		o.tokens = r.C.Usage.CompletionTokens
	}
	return o, r.Status
}

// cancelAfterFirst starts a streaming request and disconnects after its
// first chunk; it returns the HTTP status (or -1).
func cancelAfterFirst(url string, body map[string]any) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/completions", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: {") {
			break
		}
	}
	return resp.StatusCode
}

// runLoad runs the load test on be and logs throughput. With adaptive, the
// model serves a random hyper adapter (online assignment to 4 centroids)
// and the requests of every other client say "adapt": false, so that
// batches mix adapted and unadapted sequences.
//
// (Over 80 lines: one load run: the server, its clients and the throughput log
// share the setup.)
func runLoad(t *testing.T, be gpu.Backend, adaptive bool, slots, clients, perClient, maxTokens int) {
	m, tok := tinyModel(t, be)
	var md Model = Base{m}
	if adaptive {
		md = newAdaptive(t, m, testHyper(t, m, 4, 7), AdaptOptions{})
	}
	s, url := testServer(t, md, tok, Options{Slots: slots, Queue: 64})
	mix := func(c, j int) loadReq {
		lr := loadMix(c, j, maxTokens)
		if adaptive && lr.body != nil && c%2 == 1 {
			lr.body["adapt"] = false
		}
		return lr
	}

	// Each distinct valid request served alone, one at a time.
	alone := map[string]outcome{}
	var aloneTokens int
	t0 := time.Now()
	for c := 0; c < clients; c++ {
		for j := 0; j < perClient; j++ {
			lr := mix(c, j)
			key := mustJSON(lr.body)
			if lr.kind != "valid" || alone[key].texts != nil {
				continue
			}
			o, code := do(t, url, lr.body)
			if code != 200 {
				t.Fatalf("alone: %s: status %d", key, code)
			}
			alone[key] = o
		}
	}
	aloneTime := time.Since(t0)
	aloneSteps := s.Scheduler().Stats().Steps

	// Everything at once: clients x perClient requests.
	type result struct {
		lr   loadReq
		code int
		out  outcome
	}
	results := make(chan result, clients*perClient)
	t0 = time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perClient; j++ {
				lr := mix(c, j)
				res := result{lr: lr}
				switch lr.kind {
				case "valid":
					res.out, res.code = do(t, url, lr.body)
				case "bad":
					res.code = post(context.Background(), t, url, lr.raw).Status
				case "cancel":
					res.code = cancelAfterFirst(url, lr.body)
				}
				results <- res
			}
		}()
	}
	wg.Wait()
	close(results)
	loadTime := time.Since(t0)
	loadSteps := s.Scheduler().Stats().Steps - aloneSteps

	n, counts := 0, map[string]int{}
	var loadTokens, validN int
	for r := range results {
		n++
		counts[r.lr.kind]++
		if r.code >= 500 || r.code < 0 {
			t.Errorf("%s request %v: status %d", r.lr.kind, r.lr.body, r.code)
		}
		switch r.lr.kind {
		case "valid":
			validN++
			want := alone[mustJSON(r.lr.body)]
			if r.code != 200 || r.out.String() != want.String() || r.out.tokens != want.tokens {
				t.Errorf("%v under load:\n got %v (%d tokens)\nwant %v (%d tokens, alone)", r.lr.body, r.out, r.out.tokens, want, want.tokens)
			}
			loadTokens += r.out.tokens
		case "bad":
			if r.code != 400 {
				t.Errorf("bad request %s: status %d, want 400", r.lr.raw, r.code)
			}
		case "cancel":
			if r.code != 200 {
				t.Errorf("cancelled stream: status %d", r.code)
			}
		}
	}
	if n != clients*perClient {
		t.Errorf("%d of %d requests answered", n, clients*perClient)
	}
	waitFor(t, 10*time.Second, "cancelled sequences to free their slots", func() bool {
		st := s.Scheduler().Stats()
		return st.Running == 0 && st.Queued == 0
	})
	for _, o := range alone {
		aloneTokens += o.tokens
	}
	if adaptive {
		t.Logf("adapted with %v", md)
	}
	t.Logf("%s, %d slots: %d clients x %d requests (%v); %d distinct valid requests",
		be.Name(), slots, clients, perClient, counts, len(alone))
	t.Logf("one at a time: %d distinct requests, %d tokens in %v (%.1f tokens/s, %d steps)",
		len(alone), aloneTokens, aloneTime.Round(time.Millisecond), float64(aloneTokens)/aloneTime.Seconds(), aloneSteps)
	t.Logf("concurrent:    %d valid requests (+ bad and cancelled), %d tokens in %v (%.1f tokens/s, %d steps)",
		validN, loadTokens, loadTime.Round(time.Millisecond), float64(loadTokens)/loadTime.Seconds(), loadSteps)
}

// TestLoadWebGPU runs the load test on the real WebGPU backend (lavapipe
// without a GPU).
func TestLoadWebGPU(t *testing.T) {
	runLoad(t, gputest.Backend(t), false, 4, 4, 4, 5)
}

// TestLoadAdaptiveWebGPU runs a smaller load with adaptation on WebGPU.
func TestLoadAdaptiveWebGPU(t *testing.T) {
	runLoad(t, gputest.Backend(t), true, 4, 4, 3, 4)
}

// TestLoadReference runs a larger load on the plain-Go reference backend.
func TestLoadReference(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	runLoad(t, ref.New(), false, 8, 8, 6, 6)
}

// BenchmarkServeThroughput serves 8 greedy requests of 8 tokens on the
// WebGPU backend, one at a time or all at once, and reports tokens/s.
func BenchmarkServeThroughput(b *testing.B) {
	be := gputest.Backend(b)
	m, tok := tinyModel(b, be)
	for _, mode := range []string{"alone", "batched"} {
		b.Run(mode, func(b *testing.B) {
			_, url := testServer(b, Base{m}, tok, Options{Slots: 8})
			tokens := 0
			t0 := time.Now()
			for b.Loop() {
				var wg sync.WaitGroup
				var mu sync.Mutex
				for i := range 8 {
					body := map[string]any{"prompt": loadPrompts[i%len(loadPrompts)], "max_tokens": 8, "temperature": 0}
					req := func() {
						o, code := do(b, url, body)
						if code != 200 {
							b.Errorf("status %d", code)
						}
						mu.Lock()
						tokens += o.tokens
						mu.Unlock()
					}
					if mode == "alone" {
						req()
						continue
					}
					wg.Add(1)
					go func() { defer wg.Done(); req() }()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(tokens)/time.Since(t0).Seconds(), "tokens/s")
		})
	}
}
