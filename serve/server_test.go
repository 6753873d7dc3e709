package serve

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

func refServer(t testing.TB, opt Options) (*Server, string, *model.Model) {
	m, tok := tinyModel(t, ref.New())
	s, url := testServer(t, Base{m}, tok, opt)
	return s, url, m
}

// Served greedy and seeded outputs equal model.Generate's for the same
// prompt, seed and sampling parameters.
func TestServeMatchesGenerate(t *testing.T) {
	_, url, m := refServer(t, Options{Slots: 4})
	tok := tinyTok
	for _, temp := range []float64{0, 0.9} {
		t0 := time.Now()
		r := post(context.Background(), t, url, map[string]any{"prompt": "The quick brown fox", "max_tokens": 6,
			"temperature": temp, "top_k": 40, "top_p": 0.95, "seed": 11})
		if r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		t.Logf("temperature %g: %q in %v", temp, r.C.Choices[0].Text, time.Since(t0))
		gens, err := m.Generate(tok, [][]int32{tok.Encode("The quick brown fox")}, model.GenerateOptions{MaxTokens: 6,
			Sample: gpu.SampleParams{Temperature: float32(temp), TopK: 40, TopP: 0.95}, Seed: 11, StopAtEOT: true})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := r.C.Choices[0].Text, string(gens[0].Text); got != want {
			t.Errorf("temperature %g: served %q, Generate %q", temp, got, want)
		}
		if u := r.C.Usage; u == nil || u.PromptTokens != 4 || u.CompletionTokens != len(gens[0].Tokens) || u.TotalTokens != 4+u.CompletionTokens {
			t.Errorf("usage %+v, want 4 prompt + %d completion tokens", u, len(gens[0].Tokens))
		}
	}
}

// Bad requests get an OpenAI-style error with the right status and param.
func TestServeBadRequests(t *testing.T) {
	_, url, _ := refServer(t, Options{Slots: 2, MaxBodyBytes: 4096})
	long := strings.Repeat("word ", 300) // 300 tokens > context 256
	cases := []struct {
		name, body string
		status     int
		param      string
	}{
		{"malformed", `{"prompt": "hi"`, 400, ""},
		{"not json", `hello`, 400, ""},
		{"empty body", ``, 400, ""},
		{"array body", `[1,2]`, 400, ""},
		{"trailing data", `{"prompt":"hi"} {}`, 400, ""},
		{"unknown field", `{"prompt":"hi","bogus":1}`, 400, "bogus"},
		{"wrong type max_tokens", `{"prompt":"hi","max_tokens":"5"}`, 400, "max_tokens"},
		{"fractional max_tokens", `{"prompt":"hi","max_tokens":2.5}`, 400, "max_tokens"},
		{"wrong type temperature", `{"prompt":"hi","temperature":"hot"}`, 400, "temperature"},
		{"wrong type stream", `{"prompt":"hi","stream":"yes"}`, 400, "stream"},
		{"wrong type prompt", `{"prompt":5}`, 400, "prompt"},
		{"wrong type stop", `{"prompt":"hi","stop":7}`, 400, "stop"},
		{"missing prompt", `{"max_tokens":2}`, 400, "prompt"},
		{"empty prompt", `{"prompt":""}`, 400, "prompt"},
		{"empty prompt array", `{"prompt":[]}`, 400, "prompt"},
		{"empty prompt in array", `{"prompt":["a",""]}`, 400, "prompt"},
		{"token out of vocab", `{"prompt":[1,99999]}`, 400, "prompt"},
		{"prompt over context", mustJSON(map[string]any{"prompt": long, "max_tokens": 1}), 400, "prompt"},
		{"prompt + max_tokens over context", mustJSON(map[string]any{"prompt": strings.Repeat("word ", 250), "max_tokens": 10}), 400, "max_tokens"},
		{"max_tokens over limit", `{"prompt":"hi","max_tokens":100000}`, 400, "max_tokens"},
		{"max_tokens zero", `{"prompt":"hi","max_tokens":0}`, 400, "max_tokens"},
		{"n over limit", `{"prompt":"hi","n":1000}`, 400, "n"},
		{"n zero", `{"prompt":"hi","n":0}`, 400, "n"},
		{"too many choices", `{"prompt":["a","b","c","d","e"],"n":8}`, 400, "n"},
		{"temperature range", `{"prompt":"hi","temperature":3}`, 400, "temperature"},
		{"top_p range", `{"prompt":"hi","top_p":0}`, 400, "top_p"},
		{"top_k negative", `{"prompt":"hi","top_k":-1}`, 400, "top_k"},
		{"logprobs range", `{"prompt":"hi","logprobs":50}`, 400, "logprobs"},
		{"too many stops", `{"prompt":"hi","stop":["a","b","c","d","e"]}`, 400, "stop"},
		{"penalty", `{"prompt":"hi","presence_penalty":1}`, 400, "presence_penalty"},
		{"stream_options without stream", `{"prompt":"hi","stream_options":{"include_usage":true}}`, 400, "stream_options"},
		{"other model", `{"prompt":"hi","model":"gpt-4"}`, 404, "model"},
		{"body too large", mustJSON(map[string]any{"prompt": strings.Repeat("x", 5000)}), 413, ""},
	}
	for _, c := range cases {
		r := post(context.Background(), t, url, c.body)
		if r.Status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, r.Status, c.status, r.Body)
			continue
		}
		got := ""
		if r.Err.Param != nil {
			got = *r.Err.Param
		}
		if got != c.param || r.Err.Message == "" || r.Err.Type == "" {
			t.Errorf("%s: error %s, want param %q", c.name, r.Body, c.param)
		}
	}
	// Wrong methods and paths answer JSON errors too.
	resp, err := http.Get(url + "/v1/completions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /v1/completions: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if code, body := get(t, url+"/nope"); code != 404 || !strings.Contains(body, `"error"`) {
		t.Errorf("GET /nope: %d %s", code, body)
	}
	// The server still serves after all that.
	if r := post(context.Background(), t, url, `{"prompt":"hi","max_tokens":1}`); r.Status != 200 {
		t.Errorf("after bad requests: %d %s", r.Status, r.Body)
	}
}

// Streaming yields the same text as the plain response, then [DONE]; echo,
// stop strings, logprobs, n and several prompts work in both modes.
//
// (Over 80 lines: one server; each request option checked in both modes in
// turn.)
func TestServeStreamAndOptions(t *testing.T) {
	_, url, _ := refServer(t, Options{Slots: 3})
	ctx := context.Background()
	base := map[string]any{"prompt": []string{"Hello there", "Once upon a time"}, "max_tokens": 8, "temperature": 0.8,
		"seed": 5, "n": 2, "logprobs": 2, "echo": true}
	plain := post(ctx, t, url, base)
	if plain.Status != 200 || len(plain.C.Choices) != 4 {
		t.Fatalf("plain: %d %s", plain.Status, plain.Body)
	}
	sreq := maps.Clone(base)
	sreq["stream"] = true
	sreq["stream_options"] = map[string]any{"include_usage": true}
	sr := post(ctx, t, url, sreq)
	if sr.Status != 200 || sr.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v %s", sr.Status, sr.Header, sr.Body)
	}
	st := parseStream(t, sr.Body)
	if !st.Done || st.Error != "" {
		t.Fatalf("stream did not end with [DONE] (error %q):\n%s", st.Error, sr.Body)
	}
	last := st.Chunks[len(st.Chunks)-1]
	if last.Usage == nil || *last.Usage != *plain.C.Usage || len(last.Choices) != 0 {
		t.Errorf("usage chunk %+v, want %+v", last, plain.C.Usage)
	}
	prompts := []string{"Hello there", "Once upon a time"}
	for i, c := range plain.C.Choices {
		if c.Index != i {
			t.Errorf("choice %d has index %d", i, c.Index)
		}
		if !strings.HasPrefix(c.Text, prompts[i/2]) {
			t.Errorf("choice %d: echo missing: %q", i, c.Text)
		}
		if st.Text[i] != c.Text || st.Finish[i] != *c.FinishReason {
			t.Errorf("choice %d: stream %q (%s), plain %q (%s)", i, st.Text[i], st.Finish[i], c.Text, *c.FinishReason)
		}
		lp := c.Logprobs
		if lp == nil || len(lp.Tokens) != len(lp.TokenLogprobs) || len(lp.Tokens) != len(lp.TextOffset) || len(lp.Tokens) != len(lp.TopLogprobs) {
			t.Fatalf("choice %d: logprobs %+v", i, lp)
		}
		np := len(tinyTok.Encode(prompts[i/2]))
		if strings.Join(lp.Tokens, "") != c.Text {
			t.Errorf("choice %d: tokens %q do not spell the text %q", i, lp.Tokens, c.Text)
		}
		for j := range lp.Tokens {
			if !strings.HasPrefix(c.Text[lp.TextOffset[j]:], lp.Tokens[j]) {
				t.Errorf("choice %d token %d: offset %d does not point at %q", i, j, lp.TextOffset[j], lp.Tokens[j])
			}
			if j < np {
				if lp.TokenLogprobs[j] != nil || lp.TopLogprobs[j] != nil {
					t.Errorf("choice %d: prompt token %d has logprobs", i, j)
				}
				continue
			}
			v := lp.TokenLogprobs[j]
			if v == nil || *v > 0 || len(lp.TopLogprobs[j]) == 0 || len(lp.TopLogprobs[j]) > 2 {
				t.Errorf("choice %d token %d: logprob %v, top %v", i, j, v, lp.TopLogprobs[j])
			}
			for tok, tv := range lp.TopLogprobs[j] {
				if tv > 0 || (tok == lp.Tokens[j] && tv != *v) {
					t.Errorf("choice %d token %d: top logprob %q: %v (token's %v)", i, j, tok, tv, *v)
				}
			}
		}
	}
	// The two copies of one prompt draw from different seeds.
	if plain.C.Choices[0].Text == plain.C.Choices[1].Text && plain.C.Choices[2].Text == plain.C.Choices[3].Text {
		t.Errorf("n=2 gave identical copies: %+v", plain.C.Choices)
	}

	// Stop strings: cut the greedy text at a piece of itself.
	g := post(ctx, t, url, map[string]any{"prompt": "The quick brown fox", "max_tokens": 12, "temperature": 0})
	full := g.C.Choices[0].Text
	if len(full) < 4 {
		t.Fatalf("greedy text too short to test stop strings: %q", full)
	}
	stop := full[len(full)/2 : len(full)/2+2]
	want := full[:strings.Index(full, stop)]
	for _, stream := range []bool{false, true} {
		r := post(ctx, t, url, map[string]any{"prompt": "The quick brown fox", "max_tokens": 12, "temperature": 0,
			"stop": []string{"\u2603never", stop}, "stream": stream})
		text, finish := "", ""
		if stream {
			st := parseStream(t, r.Body)
			text, finish = st.Text[0], st.Finish[0]
		} else {
			text, finish = r.C.Choices[0].Text, *r.C.Choices[0].FinishReason
		}
		if text != want || finish != "stop" {
			t.Errorf("stop %q (stream %v): got %q (%s), want %q (stop); full %q", stop, stream, text, finish, want, full)
		}
	}
	if f := *g.C.Choices[0].FinishReason; f != "length" {
		t.Errorf("finish %q, want length", f)
	}
	// Token-id prompts equal their text.
	ids := tinyTok.Encode("The quick brown fox")
	r := post(ctx, t, url, map[string]any{"prompt": ids, "max_tokens": 12, "temperature": 0})
	if r.Status != 200 || r.C.Choices[0].Text != full {
		t.Errorf("token prompt: %d %q, want %q", r.Status, r.C.Choices[0].Text, full)
	}
}

// /v1/models, /healthz and /metrics.
func TestServeInfoEndpoints(t *testing.T) {
	_, url, _ := refServer(t, Options{Slots: 2, ModelName: "tiny"})
	post(context.Background(), t, url, `{"prompt":"hi","max_tokens":2}`)
	code, body := get(t, url+"/v1/models")
	if code != 200 || !strings.Contains(body, `"id":"tiny"`) || !strings.Contains(body, `"object":"list"`) {
		t.Errorf("models: %d %s", code, body)
	}
	if code, body := get(t, url+"/healthz"); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("healthz: %d %s", code, body)
	}
	code, body = get(t, url+"/metrics")
	for _, name := range []string{"chameleon_queue_depth", "chameleon_batch_size", "chameleon_tokens_per_second",
		"chameleon_time_to_first_token_seconds_bucket", "chameleon_request_duration_seconds_bucket",
		"chameleon_clusters_per_batch 1", `chameleon_requests_total{code="200"} 1`, "chameleon_generated_tokens_total 2"} {
		if !strings.Contains(body, name) {
			t.Errorf("metrics lack %q", name)
		}
	}
	if code != 200 {
		t.Errorf("metrics: %d", code)
	}
}
