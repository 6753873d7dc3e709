package serve

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// FuzzCompletionRequest sends arbitrary bodies to /v1/completions (the
// handler in process, the reference backend, at most 2 tokens a request):
// whatever the body, the server answers with a client error or a
// completion, never a 5xx, and a non-streamed answer is valid JSON.
func FuzzCompletionRequest(f *testing.F) {
	for _, s := range []string{
		`{"prompt": "Hello", "max_tokens": 2, "temperature": 0}`,
		`{"prompt": ["a", "b"], "max_tokens": 1, "n": 2, "seed": 3, "echo": true, "logprobs": 2}`,
		`{"prompt": [[1, 2, 3]], "max_tokens": 1, "stop": ["\n", "x"], "top_p": 0.5, "top_k": 3}`,
		`{"prompt": "Hi", "max_tokens": 2, "stream": true}`,
		`{"prompt": "", "max_tokens": 1}`,
		`{"prompt": "x", "max_tokens": 99999}`,
		`{"prompt": 7}`,
		`{"prompt": "x", "unknown": 1}`,
		`{"prompt": "x", "temperature": "hot"}`,
		`{`, ``, `null`, `[]`, `{"prompt": [[-1, 99999999]]}`,
	} {
		f.Add([]byte(s))
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/completions", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("body %q: status %d: %s", body, w.Code, w.Body.String())
		}
		if w.Code != http.StatusOK || strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
			return
		}
		var v map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("body %q: status %d with invalid JSON %q", body, w.Code, w.Body.String())
		}
	})
}

// fuzzServer is the server the fuzz tests call in process: the reference
// backend, at most 2 tokens and 4 choices a request.
func fuzzServer(f *testing.F) *Server {
	m, tok := tinyModel(f, ref.New())
	s, err := New(Base{M: m}, tok, Options{Slots: 2, Queue: 4, MaxTokens: 2, MaxN: 2, MaxChoices: 4})
	if err != nil {
		f.Fatal(err)
	}
	return s
}
