package serve

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// apiErr decodes an OpenAI error body.
func apiErr(t *testing.T, body []byte) APIError {
	t.Helper()
	var e struct{ Error APIError }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not an OpenAI error: %s", body)
	}
	return e.Error
}

// A key that names a field only up to case, or that repeats one, is
// refused: encoding/json would take "MAX_TOKENS" as max_tokens and let
// the last of two keys win, so a proxy that checks the body's max_tokens
// (or any field) with an exact parser would see other values than the
// server runs with.
func TestJSONKeysExact(t *testing.T) {
	_, url, _ := refServer(t, Options{Slots: 1})
	for _, c := range []struct{ path, body, param, code string }{
		{"/v1/completions", `{"prompt":"hi","Max_Tokens":2}`, "Max_Tokens", "unknown_field"},
		{"/v1/completions", `{"PROMPT":"hi","max_tokens":2}`, "PROMPT", "unknown_field"},
		{"/v1/completions", `{"prompt":"hi","max_tokens":1,"max_tokens":2}`, "max_tokens", "duplicate_field"},
		{"/v1/completions", `{"prompt":"hi","max_tokens":1,"stream":true,"stream_options":{"Include_Usage":true}}`, "Include_Usage", "unknown_field"},
		{"/v1/chat/completions", `{"messages":[{"Role":"user","content":"hi"}],"max_tokens":1}`, "Role", "unknown_field"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi","role":"system"}],"max_tokens":1}`, "role", "duplicate_field"},
		{"/tokenize", `{"Content":"hi"}`, "Content", "unknown_field"},
		{"/detokenize", `{"tokens":[1],"Tokens":[2]}`, "Tokens", "unknown_field"},
	} {
		code, _, body := postTo(t, url, c.path, c.body)
		if code != 400 {
			t.Errorf("%s %s: %d %s, want 400", c.path, c.body, code, body)
			continue
		}
		if e := apiErr(t, body); e.Param != c.param || e.Code != c.code {
			t.Errorf("%s %s: %s, want param %q code %q", c.path, c.body, body, c.param, c.code)
		}
	}
	// Exact keys, nested ones and free map keys included, still pass.
	for _, c := range [][2]string{
		{"/v1/completions", `{"prompt":"hi","max_tokens":1,"logit_bias":{},"stream":true,"stream_options":{"include_usage":true}}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}],"name":"a"}],"max_tokens":1}`},
		{"/tokenize", `{"messages":[{"role":"user","content":"hi"}],"add_generation_prompt":false}`},
	} {
		if code, _, body := postTo(t, url, c[0], c[1]); code != 200 {
			t.Errorf("%s %s: %d %s", c[0], c[1], code, body)
		}
	}
}

// A field of the wrong JSON type is explained in JSON's terms, not by the
// server's Go types ("int32", "[]serve.ChatMessage").
func TestTypeErrorsInJSONTerms(t *testing.T) {
	_, url, _ := refServer(t, Options{Slots: 1})
	for _, c := range []struct{ path, body, param, want string }{
		{"/detokenize", `{"tokens":["a"]}`, "tokens", "want an integer"},
		{"/detokenize", `{"tokens":{}}`, "tokens", "want an array"},
		{"/v1/chat/completions", `{"messages":{"role":"user","content":"hi"}}`, "messages", "want an array"},
		{"/v1/chat/completions", `{"messages":["hi"]}`, "messages", "want an object"},
		{"/v1/completions", `{"prompt":"hi","stream_options":7,"stream":true}`, "stream_options", "want an object"},
		{"/v1/completions", `{"prompt":"hi","logit_bias":[1]}`, "logit_bias", "want an object"},
	} {
		code, _, body := postTo(t, url, c.path, c.body)
		e := apiErr(t, body)
		if code != 400 || e.Param != c.param || !strings.HasSuffix(e.Message, c.want) {
			t.Errorf("%s %s: %d %s, want 400 about %s ending %q", c.path, c.body, code, body, c.param, c.want)
		}
	}
}

// A chat request's errors name the fields it sent: top_logprobs (not
// logprobs, a boolean there) and max_completion_tokens when that was sent.
func TestChatErrorsNameChatFields(t *testing.T) {
	_, url, _ := refServer(t, Options{Slots: 1})
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	for _, c := range []struct{ body, param, in string }{
		{`{` + msgs + `,"logprobs":true,"top_logprobs":20}`, "top_logprobs", "top_logprobs 20"},
		{`{` + msgs + `,"logprobs":true,"top_logprobs":-1}`, "top_logprobs", "top_logprobs -1"},
		{`{` + msgs + `,"max_completion_tokens":100000}`, "max_completion_tokens", "max_completion_tokens 100000"},
		{`{` + msgs + `,"max_tokens":100000}`, "max_tokens", "max_tokens 100000"},
	} {
		code, _, body := postTo(t, url, "/v1/chat/completions", c.body)
		e := apiErr(t, body)
		if code != 400 || e.Param != c.param || !strings.Contains(e.Message, c.in) {
			t.Errorf("%s: %d %s, want 400 about %s saying %q", c.body, code, body, c.param, c.in)
		}
	}
}

// Without max_tokens a chat reply runs to its stop strings or the end of
// the context, as OpenAI's chat API and llama-server do, not to the legacy
// completions default of 16 tokens; and a long conversation sent without
// max_tokens is not refused for a max_tokens the client never sent.
func TestChatDefaultMaxTokens(t *testing.T) {
	plain, err := NewChatTemplate(`{{ messages[0].content }}`, "test", nil, "", "") // no stop strings
	if err != nil {
		t.Fatal(err)
	}
	_, url, _ := refServer(t, Options{Slots: 1, Chat: plain})
	for _, words := range []int{3, 250} {
		content := strings.TrimSpace(strings.Repeat("word ", words))
		code, _, body := postTo(t, url, "/v1/chat/completions", mustJSON(map[string]any{
			"messages": []map[string]any{{"role": "user", "content": content}}, "temperature": 0}))
		var r ChatCompletion
		json.Unmarshal(body, &r)
		if code != 200 || r.Usage == nil || len(r.Choices) != 1 || r.Choices[0].FinishReason == nil {
			t.Errorf("%d words: %d %.300s", words, code, body)
			continue
		}
		u, finish := r.Usage, *r.Choices[0].FinishReason
		if finish == "length" && u.TotalTokens != 256 || finish == "stop" && u.CompletionTokens <= 16 {
			t.Errorf("%d words: %d prompt + %d completion tokens, finish %s: want to run to the context of 256 (or <|endoftext|> past 16)",
				words, u.PromptTokens, u.CompletionTokens, finish)
		}
	}
}

// A text prompt too long for the context is refused before it is
// tokenized: encoding one long word is slow (a 1 MiB word, within the
// default body limit, took about 2 s of CPU on a 2-core machine for a
// request that could only be refused). A prompt at the bound is still
// read.
func TestHugePromptRefusedUnread(t *testing.T) {
	s, url, _ := refServer(t, Options{Slots: 1, MaxBodyBytes: 2 << 20})
	t.Logf("longest token: %d bytes", s.maxTokenBytes)
	for _, path := range []string{"/v1/completions", "/v1/chat/completions"} {
		body := mustJSON(map[string]any{"prompt": strings.Repeat("a", 1<<20), "max_tokens": 1})
		if path != "/v1/completions" {
			body = mustJSON(map[string]any{"messages": []map[string]any{{"role": "user", "content": strings.Repeat("a", 1<<20)}}})
		}
		code, _, rb := postTo(t, url, path, body)
		e := apiErr(t, rb)
		if code != 400 || e.Code != "context_length_exceeded" || !strings.Contains(e.Message, "bytes") {
			t.Errorf("%s, a 1 MiB word: %d %s, want 400 context_length_exceeded counted in bytes, before tokenizing", path, code, rb)
		}
	}
	// Just under the bound the prompt is tokenized (and refused for its
	// tokens): the bound refuses nothing that could fit.
	under := strings.Repeat("a", 255*s.maxTokenBytes)
	code, _, rb := postTo(t, url, "/v1/completions", mustJSON(map[string]any{"prompt": under, "max_tokens": 1}))
	if e := apiErr(t, rb); code != 400 || !strings.Contains(e.Message, "tokens; the context holds") {
		t.Errorf("a prompt at the bound: %d %s, want it tokenized", code, rb)
	}
}

// A null where a token id (or a stop string) belongs is refused, not read
// as token 0 ("!") or an empty stop string.
func TestNullElementsRefused(t *testing.T) {
	_, url, _ := refServer(t, Options{Slots: 1})
	for _, c := range []struct{ path, body, param string }{
		{"/v1/completions", `{"prompt":[1,null],"max_tokens":1}`, "prompt"},
		{"/v1/completions", `{"prompt":[null,1],"max_tokens":1}`, "prompt"},
		{"/v1/completions", `{"prompt":[[1],[2,null]],"max_tokens":1}`, "prompt"},
		{"/v1/completions", `{"prompt":"hi","max_tokens":1,"stop":["a",null]}`, "stop"},
		{"/detokenize", `{"tokens":[1,null]}`, "tokens"},
	} {
		code, _, body := postTo(t, url, c.path, c.body)
		if e := apiErr(t, body); code != 400 || e.Param != c.param {
			t.Errorf("%s %s: %d %s, want 400 about %s", c.path, c.body, code, body, c.param)
		}
	}
	// Null for an optional field is its default.
	if code, _, body := postTo(t, url, "/v1/completions", `{"prompt":[1,2],"max_tokens":null,"stop":null,"n":null}`); code != 200 {
		t.Errorf("null optional fields: %d %s", code, body)
	}
}

// The Authorization scheme's name is case-insensitive (RFC 9110): a
// client that sends "bearer KEY" is let in; the key itself is not.
func TestBearerSchemeCaseInsensitive(t *testing.T) {
	_, url, _ := refServer(t, Options{Slots: 1, APIKey: "sk-test"})
	body := `{"prompt":"hi","max_tokens":1}`
	for _, c := range []struct {
		auth string
		code int
	}{
		{"bearer sk-test", 200}, {"BEARER  sk-test ", 200}, {"Bearer sk-test", 200},
		{"bearer SK-TEST", 401}, {"Basic sk-test", 401}, {"Bearersk-test", 401}, {"sk-test", 401}, {"Bearer", 401},
	} {
		if code, _, b := postTo(t, url, "/v1/completions", body, "Authorization", c.auth); code != c.code {
			t.Errorf("Authorization %q: %d %s, want %d", c.auth, code, b, c.code)
		}
	}
}

// nanLogits is a model whose logits are all NaN (a broken checkpoint, an
// f16 overflow on the device).
type nanLogits struct{ Model }

func (m nanLogits) ForwardLast(c *model.Cache, tokens [][]int32, ad []Adapter) (gpu.Tensor, error) {
	t, err := m.Model.ForwardLast(c, tokens, ad)
	if err != nil {
		return nil, err
	}
	x, err := m.Backend().ReadF32(t)
	if err != nil {
		return nil, err
	}
	for i := range x {
		x[i] = float32(math.NaN())
	}
	return t, m.Backend().Write(t, x)
}

// A response that cannot be encoded as JSON (a NaN log-probability) is a
// 500 with an OpenAI error, not a 200 with an empty body.
func TestUnencodableResponseIs500(t *testing.T) {
	m, tok := tinyModel(t, ref.New())
	_, url := testServer(t, nanLogits{Base{m}}, tok, Options{Slots: 1})
	code, _, body := postTo(t, url, "/v1/completions", `{"prompt":"hi","max_tokens":1,"logprobs":1}`)
	if code != 500 {
		t.Fatalf("NaN logprobs: %d %q, want 500", code, body)
	}
	if e := apiErr(t, body); e.Code != "internal_error" || !strings.Contains(e.Message, "NaN") {
		t.Errorf("NaN logprobs: %s, want internal_error naming the NaN", body)
	}
	if code, _, body := postTo(t, url, "/v1/completions", `{"prompt":"hi","max_tokens":1}`); code != 200 {
		t.Errorf("without logprobs: %d %s", code, body)
	}
}

// A chat message's role is one of OpenAI's (a made-up one was rendered
// into the prompt as "Hacker: ..."), and its content is required: null or
// missing content is refused for every role, an assistant's included
// (null is OpenAI's for a tool-call turn, and this server takes no tool
// calls). /tokenize parses messages the same way.
func TestChatMessageRoleAndContent(t *testing.T) {
	_, url, _ := refServer(t, Options{Slots: 1})
	for _, c := range []struct{ msgs, param, code string }{
		{`[{"role":"hacker","content":"hi"}]`, "messages[0].role", "invalid_value"},
		{`[{"role":"user","content":"a"},{"role":"User","content":"b"}]`, "messages[1].role", "invalid_value"},
		{`[{"role":"function","content":"hi"}]`, "messages[0].role", "invalid_value"},
		{`[{"role":"user","content":null}]`, "messages[0].content", "missing_content"},
		{`[{"role":"system"},{"role":"user","content":"hi"}]`, "messages[0].content", "missing_content"},
		{`[{"role":"user","content":"hi"},{"role":"assistant","content":null}]`, "messages[1].content", "missing_content"},
		{`[{"role":"tool","content":null}]`, "messages[0].content", "missing_content"},
		{`[{"role":"developer","content":null}]`, "messages[0].content", "missing_content"},
	} {
		for _, req := range [][2]string{
			{"/v1/chat/completions", `{"max_tokens":1,"messages":` + c.msgs + `}`},
			{"/tokenize", `{"messages":` + c.msgs + `}`},
		} {
			path := req[0]
			code, _, body := postTo(t, url, path, req[1])
			if code != 400 {
				t.Errorf("%s %s: %d %s, want 400", path, c.msgs, code, body)
				continue
			}
			e := apiErr(t, body)
			if e.Param != c.param || e.Code != c.code {
				t.Errorf("%s %s: %s, want param %q code %q", path, c.msgs, body, c.param, c.code)
			}
			if c.code == "invalid_value" && !strings.Contains(e.Message, "system, developer, user, assistant, tool") {
				t.Errorf("%s %s: message %q does not name the allowed roles", path, c.msgs, e.Message)
			}
		}
	}
	// Every allowed role, with string or text-part content (empty too), passes.
	ok := `{"messages":[{"role":"system","content":"s"},{"role":"developer","content":""},` +
		`{"role":"user","content":[{"type":"text","text":"u"}]},{"role":"assistant","content":"a"},` +
		`{"role":"tool","content":"t"},{"role":"user","content":"hi"}],"max_tokens":1}`
	if code, _, body := postTo(t, url, "/v1/chat/completions", ok); code != 200 {
		t.Errorf("%s: %d %s", ok, code, body)
	}
}
