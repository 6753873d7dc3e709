package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// postTo sends a JSON body to path and returns the status and body.
func postTo(t testing.TB, url, path, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

var chatMsgs = []map[string]any{
	{"role": "system", "content": "You answer in verse."},
	{"role": "user", "content": "Where is the fox?"},
	{"role": "assistant", "content": "Under the hill."},
	{"role": "user", "content": []map[string]any{{"type": "text", "text": "And the "}, {"type": "text", "text": "hound?"}}},
}

// The default template renders a plain-text transcript, exactly.
func TestDefaultChatTemplate(t *testing.T) {
	ct := DefaultChat("<|endoftext|>", "<|endoftext|>")
	var msgs []ChatMessage
	if err := json.Unmarshal([]byte(mustJSON(chatMsgs)), &msgs); err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		if e := msgs[i].parse(i); e != nil {
			t.Fatal(e)
		}
	}
	got, err := ct.Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "You answer in verse.\n\nUser: Where is the fox?\nAssistant: Under the hill.\nUser: And the hound?\nAssistant:"
	if got != want {
		t.Errorf("rendered %q\nwant     %q", got, want)
	}
	if got, _ := ct.Render(msgs[:2], false); got != "You answer in verse.\n\nUser: Where is the fox?\n" {
		t.Errorf("without the generation prompt: %q", got)
	}
}

// A chat completion is the completion of the rendered messages, with the
// template's stop strings: same greedy text, same usage; streamed, the
// deltas add up to the same text after a first chunk with the role.
//
// (Over 80 lines: one server; the plain, streamed and usage checks compare the
// same completion.)
func TestChatCompletions(t *testing.T) {
	s, url, _ := refServer(t, Options{Slots: 2})
	var msgs []ChatMessage
	json.Unmarshal([]byte(mustJSON(chatMsgs)), &msgs)
	for i := range msgs {
		msgs[i].parse(i)
	}
	prompt, err := s.ChatTemplate().Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	ref := post(context.Background(), t, url, map[string]any{"prompt": prompt, "max_tokens": 8, "temperature": 0,
		"stop": DefaultChatStops})
	if ref.Status != 200 {
		t.Fatalf("completion: %d %s", ref.Status, ref.Body)
	}
	code, _, body := postTo(t, url, "/v1/chat/completions", mustJSON(map[string]any{"messages": chatMsgs, "max_tokens": 8, "temperature": 0}))
	if code != 200 {
		t.Fatalf("chat: %d %s", code, body)
	}
	var c ChatCompletion
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if c.Object != "chat.completion" || !strings.HasPrefix(c.ID, "chatcmpl-") || len(c.Choices) != 1 {
		t.Fatalf("chat response %s", body)
	}
	ch := c.Choices[0]
	if ch.Message == nil || ch.Message.Role != "assistant" || ch.Message.Content == nil || *ch.Message.Content != ref.C.Choices[0].Text {
		t.Errorf("chat message %s, completion text %q", mustJSON(ch.Message), ref.C.Choices[0].Text)
	}
	if ch.FinishReason == nil || *ch.FinishReason != *ref.C.Choices[0].FinishReason {
		t.Errorf("finish %v, want %v", ch.FinishReason, *ref.C.Choices[0].FinishReason)
	}
	if mustJSON(c.Usage) != mustJSON(ref.C.Usage) {
		t.Errorf("usage %s, want %s", mustJSON(c.Usage), mustJSON(ref.C.Usage))
	}
	if e := ch.Chameleon; e == nil || e.Adapted || e.Reason != "no_adapter" || e.Cluster != nil {
		t.Errorf("extension %s: want not adapted, no adapter", mustJSON(e))
	}

	// Streamed, with usage and logprobs.
	code, hd, body := postTo(t, url, "/v1/chat/completions", mustJSON(map[string]any{"messages": chatMsgs, "max_tokens": 8,
		"temperature": 0, "stream": true, "stream_options": map[string]any{"include_usage": true}, "logprobs": true, "top_logprobs": 2}))
	if code != 200 || !strings.HasPrefix(hd.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", code, body)
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n\n")
	if lines[len(lines)-1] != "data: [DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", lines[len(lines)-1])
	}
	var text, finish string
	var usage *Usage
	ntok := 0
	for i, l := range lines[:len(lines)-1] {
		var k ChatCompletion
		if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &k); err != nil {
			t.Fatalf("chunk %q: %v", l, err)
		}
		if k.Object != "chat.completion.chunk" || k.ID == "" {
			t.Errorf("chunk %d: %s", i, l)
		}
		if k.Usage != nil {
			usage = k.Usage
			continue
		}
		d := k.Choices[0].Delta
		if d == nil {
			t.Fatalf("chunk %d has no delta: %s", i, l)
		}
		if (i == 0) != (d.Role == "assistant") {
			t.Errorf("chunk %d: role %q (only the first carries it)", i, d.Role)
		}
		if d.Content != nil {
			text += *d.Content
		}
		if lp := k.Choices[0].Logprobs; lp != nil {
			for _, x := range lp.Content {
				ntok++
				if len(x.TopLogprobs) != 2 || x.Logprob > 0 || len(x.Bytes) == 0 {
					t.Errorf("token logprob %s", mustJSON(x))
				}
			}
		}
		if f := k.Choices[0].FinishReason; f != nil {
			finish = *f
		}
	}
	if text != ref.C.Choices[0].Text || finish != *ref.C.Choices[0].FinishReason {
		t.Errorf("streamed %q (%s), completion %q (%s)", text, finish, ref.C.Choices[0].Text, *ref.C.Choices[0].FinishReason)
	}
	if usage == nil || *usage != *ref.C.Usage {
		t.Errorf("streamed usage %v, want %v", usage, ref.C.Usage)
	}
	if ntok == 0 || ntok > usage.CompletionTokens {
		t.Errorf("%d tokens with logprobs for %d completion tokens", ntok, usage.CompletionTokens)
	}
}

// Bad chat requests get OpenAI errors naming the field.
func TestChatBadRequests(t *testing.T) {
	raise, err := NewChatTemplate(`{% if messages[0].role != 'user' %}{{ raise_exception('the first message must be the user\'s') }}{% endif %}{{ messages[0].content }}`, "test", nil, "", "")
	if err != nil {
		t.Fatal(err)
	}
	_, url, _ := refServer(t, Options{Slots: 1, Chat: raise})
	for _, c := range []struct{ body, param, code string }{
		{`{"messages":[]}`, "messages", "missing_messages"},
		{`{}`, "messages", "missing_messages"},
		{`{"messages":[{"content":"hi"}]}`, "messages[0].role", "missing_role"},
		{`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, "messages[0].content[0]", "unsupported"},
		{`{"messages":[{"role":"user","content":7}]}`, "messages[0].content", "invalid_type"},
		{`{"messages":[{"role":"system","content":"x"}]}`, "messages", "chat_template_error"},
		{`{"messages":[{"role":"user","content":"hi"}],"tools":[]}`, "tools", "unknown_field"},
		{`{"messages":[{"role":"user","content":"hi"}],"top_logprobs":2}`, "top_logprobs", "invalid_value"},
		{`{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":0}`, "max_completion_tokens", "invalid_value"},
		{`{"messages":[{"role":"user","content":"` + strings.Repeat("hi ", 300) + `"}]}`, "messages", "context_length_exceeded"},
		{`{"messages":[{"role":"user","content":"hi"}],"model":"other"}`, "model", "model_not_found"},
	} {
		code, _, body := postTo(t, url, "/v1/chat/completions", c.body)
		var e struct{ Error APIError }
		json.Unmarshal(body, &e)
		if code/100 != 4 || e.Error.Param != c.param || e.Error.Code != c.code {
			t.Errorf("%.80s: %d %s, want 4xx about %s (%s)", c.body, code, body, c.param, c.code)
		}
	}
	if code, _, body := postTo(t, url, "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1}`); code != 200 {
		t.Errorf("a good request to the same server: %d %s", code, body)
	}
}

// The template comes from tokenizer_config.json as a string or a named list.
func TestChatTemplateFromTokenizerConfig(t *testing.T) {
	for _, c := range []struct {
		json, src, bos string
		ok             bool
	}{
		{`{"chat_template":"{{ x }}","bos_token":"<s>","eos_token":{"content":"</s>"}}`, "{{ x }}", "<s>", true},
		{`{"chat_template":[{"name":"tool_use","template":"T"},{"name":"default","template":"D"}]}`, "D", "", true},
		{`{"bos_token":"<s>"}`, "", "<s>", false},
	} {
		src, bos, _, ok, err := ChatTemplateFromTokenizerConfig([]byte(c.json))
		if err != nil || src != c.src || bos != c.bos || ok != c.ok {
			t.Errorf("%s: %q %q %v %v", c.json, src, bos, ok, err)
		}
	}
	if _, _, _, _, err := ChatTemplateFromTokenizerConfig([]byte(`{"chat_template":3}`)); err == nil {
		t.Errorf("a numeric chat_template was accepted")
	}
}

// /tokenize and /detokenize round-trip text and count a conversation.
func TestTokenizeEndpoints(t *testing.T) {
	s, url, _ := refServer(t, Options{Slots: 1})
	text := "The quick brown fox<|endoftext|>"
	code, _, body := postTo(t, url, "/tokenize", mustJSON(map[string]any{"content": text, "with_pieces": true}))
	var tr TokenizeResponse
	json.Unmarshal(body, &tr)
	want := tinyTok.EncodeWithSpecial(text)
	if code != 200 || mustJSON(tr.Tokens) != mustJSON(want) || tr.Count != len(want) || tr.MaxModelLen != 256 || strings.Join(tr.Pieces, "") != text {
		t.Fatalf("tokenize: %d %s, want tokens %v", code, body, want)
	}
	code, _, body = postTo(t, url, "/detokenize", mustJSON(map[string]any{"tokens": tr.Tokens}))
	var dr DetokenizeResponse
	json.Unmarshal(body, &dr)
	if code != 200 || dr.Content != text {
		t.Errorf("detokenize: %d %s", code, body)
	}
	code, _, body = postTo(t, url, "/tokenize", mustJSON(map[string]any{"messages": chatMsgs[:2]}))
	json.Unmarshal(body, &tr)
	wantPrompt := "You answer in verse.\n\nUser: Where is the fox?\nAssistant:"
	if code != 200 || tr.Prompt == nil || *tr.Prompt != wantPrompt || mustJSON(tr.Tokens) != mustJSON(tinyTok.EncodeWithSpecial(wantPrompt)) {
		t.Errorf("tokenize messages: %d %s", code, body)
	}
	_ = s
	for _, c := range []struct{ path, body, param string }{
		{"/tokenize", `{}`, "content"},
		{"/tokenize", `{"content":"a","prompt":"b"}`, "content"},
		{"/tokenize", `{"text":"a"}`, "text"},
		{"/detokenize", `{}`, "tokens"},
		{"/detokenize", `{"tokens":[1,-1]}`, "tokens"},
		{"/detokenize", `{"tokens":[99999999]}`, "tokens"},
	} {
		code, _, body := postTo(t, url, c.path, c.body)
		var e struct{ Error APIError }
		json.Unmarshal(body, &e)
		if code != 400 || e.Error.Param != c.param {
			t.Errorf("%s %s: %d %s, want 400 about %s", c.path, c.body, code, body, c.param)
		}
	}
}

// --api-key: 401 with an OpenAI error unless the Bearer key is right;
// the health probes stay open. --cors-origin: preflights answered for the
// allowed origin, refused for others; responses carry the allow header.
func TestAPIKeyAndCORS(t *testing.T) {
	var logBuf bytes.Buffer
	_, url, _ := refServer(t, Options{Slots: 1, APIKey: "sk-test", CORSOrigins: []string{"http://app.example"},
		Log: slogJSON(&logBuf)})
	body := `{"prompt":"hi","max_tokens":1}`
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "sk-test"}} {
		code, hd, b := postTo(t, url, "/v1/completions", body, h...)
		var e struct{ Error APIError }
		json.Unmarshal(b, &e)
		if code != 401 || e.Error.Code != "invalid_api_key" || e.Error.Type != "invalid_request_error" || hd.Get("WWW-Authenticate") == "" {
			t.Errorf("%v: %d %s, want 401 invalid_api_key", h, code, b)
		}
	}
	if code, _, b := postTo(t, url, "/v1/completions", body, "Authorization", "Bearer sk-test", "Origin", "http://app.example"); code != 200 {
		t.Errorf("right key: %d %s", code, b)
	}
	for _, p := range []string{"/health", "/healthz"} {
		if code, b := get(t, url+p); code != 200 || !strings.Contains(b, `"status":"ok"`) {
			t.Errorf("%s without a key: %d %s", p, code, b)
		}
	}
	if code, _ := get(t, url+"/v1/models"); code != 401 {
		t.Errorf("/v1/models without a key: %d", code)
	}
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, url+"/v1/chat/completions", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	r := preflight("http://app.example")
	if r.StatusCode != 204 || r.Header.Get("Access-Control-Allow-Origin") != "http://app.example" ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "authorization") {
		t.Errorf("preflight: %d %v", r.StatusCode, r.Header)
	}
	if r := preflight("http://evil.example"); r.StatusCode != 403 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin: %d %v", r.StatusCode, r.Header)
	}

	// One JSON log line per request, the completion's with its tokens.
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != 9 {
		t.Errorf("%d log lines for 9 requests:\n%s", len(lines), logBuf.String())
	}
	var ok map[string]any
	for _, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if v["path"] == "/v1/completions" && v["status"] == float64(200) {
			ok = v
		}
	}
	if ok == nil || ok["prompt_tokens"] != float64(1) || ok["completion_tokens"] != float64(1) || ok["base"] != float64(1) || ok["id"] == "" {
		t.Errorf("the completion's log line: %v", ok)
	}
}

// FuzzChatRequest sends arbitrary bodies to /v1/chat/completions and
// /tokenize: a client error or an answer, never a 5xx; a non-streamed
// answer is valid JSON.
func FuzzChatRequest(f *testing.F) {
	for _, s := range []string{
		`{"messages":[{"role":"user","content":"Hello"}],"max_tokens":2,"temperature":0}`,
		`{"messages":[{"role":"system","content":"x"},{"role":"user","content":[{"type":"text","text":"a"}]}],"n":2,"logprobs":true,"top_logprobs":1}`,
		`{"messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"messages":[{"role":"user","content":null}]}`,
		`{"messages":"x"}`, `{"content":"abc","with_pieces":true}`, `{"messages":[{"role":"user","content":"a"}],"add_generation_prompt":false}`,
		`{`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/v1/chat/completions", "/tokenize"} {
			req, _ := http.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code >= 500 {
				t.Fatalf("%s body %q: status %d: %s", path, body, w.Code, w.Body.String())
			}
			if w.Code != http.StatusOK || strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
				t.Fatalf("%s body %q: status %d with invalid JSON %q", path, body, w.Code, w.Body.String())
			}
		}
	})
}

// slogJSON logs JSON lines to w.
func slogJSON(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// Each choice says whether it was adapted and with which cluster.
func TestChoiceExtension(t *testing.T) {
	m, tok := tinyModel(t, ref.New())
	ad := newAdaptive(t, m, testLoRA(t, m, 5), AdaptOptions{})
	_, url := testServer(t, ad, tok, Options{Slots: 2})
	for _, c := range []struct {
		adapt   bool
		want    string
		path    string
		reqBody map[string]any
	}{
		{true, `{"adapted":true,"cluster":0,"mode":"static"}`, "/v1/chat/completions", map[string]any{"messages": chatMsgs[1:2]}},
		{false, `{"adapted":false,"cluster":null,"mode":"static","reason":"request"}`, "/v1/chat/completions", map[string]any{"messages": chatMsgs[1:2]}},
		{true, `{"adapted":true,"cluster":0,"mode":"static"}`, "/v1/completions", map[string]any{"prompt": "hi", "n": 2}},
	} {
		c.reqBody["adapt"], c.reqBody["max_tokens"] = c.adapt, 2
		code, _, body := postTo(t, url, c.path, mustJSON(c.reqBody))
		var resp struct {
			Choices []struct{ Chameleon json.RawMessage }
		}
		json.Unmarshal(body, &resp)
		if code != 200 || len(resp.Choices) == 0 {
			t.Fatalf("%s: %d %s", c.path, code, body)
		}
		for _, ch := range resp.Choices {
			if string(ch.Chameleon) != c.want {
				t.Errorf("%s adapt=%v: extension %s, want %s", c.path, c.adapt, ch.Chameleon, c.want)
			}
		}
	}
}
