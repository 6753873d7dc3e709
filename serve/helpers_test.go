package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// The tests serve `chameleon init --config tiny` (V=50257, C=128, 2
// layers, context 256) with random weights, built in memory.
var (
	tinyOnce sync.Once
	tinyHost []model.HostTensor
	tinyTok  *tokenizer.Tokenizer
)

func tinyModel(t testing.TB, be gpu.Backend) (*model.Model, *tokenizer.Tokenizer) {
	t.Helper()
	cfg := model.Configs["tiny"]
	tinyOnce.Do(func() {
		tinyHost = model.RandomInit(cfg, 3)
		var err error
		if tinyTok, err = tokenizer.NewGPT2(); err != nil {
			panic(err)
		}
	})
	w, err := model.Upload(be, cfg, tinyHost, gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	return &model.Model{Cfg: cfg, W: w, B: be}, tinyTok
}

// testServer serves m on loopback; it is shut down when the test ends.
func testServer(t testing.TB, m Model, tok *tokenizer.Tokenizer, opt Options) (*Server, string) {
	t.Helper()
	s, err := New(m, tok, opt)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		hs.Close()
	})
	return s, hs.URL
}

// reply is a decoded completion response (or error).
type reply struct {
	Status int
	Header http.Header
	Body   []byte
	C      Completion
	Err    struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}
}

// post sends body (a JSON string or a value to marshal) to /v1/completions.
func post(ctx context.Context, t testing.TB, url string, body any) reply {
	t.Helper()
	var b []byte
	if s, ok := body.(string); ok {
		b = []byte(s)
	} else {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/completions", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{Status: -1, Body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	r := reply{Status: resp.StatusCode, Header: resp.Header}
	r.Body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		if err := json.Unmarshal(r.Body, &r.C); err != nil {
			t.Errorf("decoding %s: %v", r.Body, err)
		}
	} else if resp.StatusCode != http.StatusOK {
		var e struct{ Error json.RawMessage }
		if err := json.Unmarshal(r.Body, &e); err != nil || e.Error == nil {
			t.Errorf("status %d: body is not an OpenAI error: %s", resp.StatusCode, r.Body)
		} else {
			json.Unmarshal(e.Error, &r.Err)
		}
	}
	return r
}

// streamed is a decoded event stream.
type streamed struct {
	Chunks []Completion
	Text   map[int]string // per choice
	Finish map[int]string
	Done   bool   // "data: [DONE]" came last
	Error  string // an {"error": ...} event
}

// parseStream reads server-sent events.
func parseStream(t testing.TB, body []byte) streamed {
	t.Helper()
	s := streamed{Text: map[int]string{}, Finish: map[int]string{}}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Errorf("stream line %q is not a data line", line)
			continue
		}
		if s.Done {
			t.Errorf("data after [DONE]: %q", line)
		}
		if data == "[DONE]" {
			s.Done = true
			continue
		}
		if strings.HasPrefix(data, `{"error"`) {
			s.Error = data
			continue
		}
		var c Completion
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Errorf("chunk %q: %v", data, err)
			continue
		}
		s.Chunks = append(s.Chunks, c)
		for _, ch := range c.Choices {
			s.Text[ch.Index] += ch.Text
			if ch.FinishReason != nil {
				if s.Finish[ch.Index] != "" {
					t.Errorf("choice %d finished twice", ch.Index)
				}
				s.Finish[ch.Index] = *ch.FinishReason
			}
		}
	}
	return s
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gated wraps a Model: with gating on, every ForwardLast waits for a
// permit (allow); fail, when set, may fail a step.
type gated struct {
	Model
	mu      sync.Mutex
	cond    *sync.Cond
	gating  bool
	permits int
	steps   int
	fail    func(step int) error // nil: never
}

func newGated(m Model, gating bool) *gated {
	g := &gated{Model: m, gating: gating}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// allow lets n more steps run.
func (g *gated) allow(n int) {
	g.mu.Lock()
	g.permits += n
	g.mu.Unlock()
	g.cond.Broadcast()
}

// open turns gating off.
func (g *gated) open() {
	g.mu.Lock()
	g.gating = false
	g.mu.Unlock()
	g.cond.Broadcast()
}

func (g *gated) ForwardLast(c *model.Cache, tokens [][]int32, adapt []Adapter) (gpu.Tensor, error) {
	if err := g.step(); err != nil {
		return nil, err
	}
	return g.Model.ForwardLast(c, tokens, adapt)
}

// step waits for a permit while gating, counts the step and returns the
// failure injected for it.
func (g *gated) step() error {
	g.mu.Lock()
	for g.gating && g.permits == 0 {
		g.cond.Wait()
	}
	if g.gating {
		g.permits--
	}
	g.steps++
	n := g.steps
	g.mu.Unlock()
	if g.fail != nil {
		return g.fail(n)
	}
	return nil
}

func str(s string) *string { return &s }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

var _ = fmt.Sprint

// withoutExt is cs without their extension objects (which say how each
// was served, not what it is).
func withoutExt(cs []Choice) []Choice {
	out := append([]Choice(nil), cs...)
	for i := range out {
		out[i].Chameleon = nil
	}
	return out
}

// withoutCluster is cs with the cluster ids dropped from their extension
// objects: in window mode a sequence's pool row depends on what else was
// admitted with it (its factors do not).
func withoutCluster(cs []Choice) []Choice {
	out := append([]Choice(nil), cs...)
	for i := range out {
		if e := out[i].Chameleon; e != nil {
			e2 := *e
			e2.Cluster = nil
			out[i].Chameleon = &e2
		}
	}
	return out
}
