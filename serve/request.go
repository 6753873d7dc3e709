package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// CompletionRequest is the body of POST /v1/completions: OpenAI's legacy
// completions request. Unknown fields are refused, and so are keys that
// differ from a field's name only in case and repeated keys (exactKeys).
// Fields OpenAI defines that this server does not implement are accepted
// only at their neutral value (penalties 0, best_of 1, no logit_bias, no
// suffix).
type CompletionRequest struct {
	Model       string          `json:"model"`
	Prompt      json.RawMessage `json:"prompt"`      // string, [string], [token id] or [[token id]]
	MaxTokens   *int            `json:"max_tokens"`  // default 16
	Temperature *float64        `json:"temperature"` // [0, 2], default 1; 0 is greedy
	TopP        *float64        `json:"top_p"`       // (0, 1], default 1
	TopK        *int            `json:"top_k"`       // extension: >= 0, default 0 (off)
	Stop        json.RawMessage `json:"stop"`        // string or up to 4 strings
	Seed        *int64          `json:"seed"`        // default: random
	N           *int            `json:"n"`           // choices per prompt, default 1
	Echo        bool            `json:"echo"`        // prepend the prompt to each choice's text
	Logprobs    *int            `json:"logprobs"`    // top logprobs per token, 0..MaxLogprobs
	Stream      bool            `json:"stream"`
	// StreamOptions.IncludeUsage adds a last chunk with the usage.
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	User string `json:"user"` // ignored
	// Adapt is an extension: false serves this request with the base
	// model's logits on a server that adapts (default true there); true
	// on a server without an adapter is refused.
	Adapt *bool `json:"adapt"`
	// Cache is an extension: false keeps this request out of the token
	// cache memory on a server that runs one (serve --cache): it is
	// served without the cache and its prompt joins no pool; true on a
	// server without the memory is refused.
	Cache *bool `json:"cache"`

	FrequencyPenalty *float64           `json:"frequency_penalty"`
	PresencePenalty  *float64           `json:"presence_penalty"`
	BestOf           *int               `json:"best_of"`
	LogitBias        map[string]float64 `json:"logit_bias"`
	Suffix           *string            `json:"suffix"`

	// untilContext (a chat request's): without max_tokens a choice may
	// run to the end of the context, as OpenAI's chat API and
	// llama-server do, rather than stop at the legacy default of 16.
	untilContext bool
}

// checkJSON refuses a body not declared as JSON (application/json,
// optionally with charset=utf-8) with 415: a web page may POST text/plain
// or a form to any origin without a CORS preflight, so accepting those
// would let any page a local user visits drive this server.
func checkJSON(r *http.Request) *APIError {
	ct := r.Header.Get("Content-Type")
	if mt, params, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" {
		if cs, ok := params["charset"]; !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return &APIError{Status: http.StatusUnsupportedMediaType, Type: "invalid_request_error", Code: "unsupported_media_type",
		Message: fmt.Sprintf("Content-Type %q: the body must be application/json", ct)}
}

// decodeJSON reads one JSON object of at most limit bytes into v, refusing
// unknown fields, keys that match a field only up to case, and repeated
// keys (exactKeys).
func decodeJSON(r *http.Request, limit int64, w http.ResponseWriter, v any) *APIError {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return &APIError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
				Message: fmt.Sprintf("the request body exceeds %d bytes", mb.Limit)}
		}
		if isTimeout(err) {
			w.Header().Set("Connection", "close")
			return &APIError{Status: http.StatusRequestTimeout, Type: "invalid_request_error", Code: "request_timeout",
				Message: "the request body did not arrive in time"}
		}
		return badRequest("", "", "reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("", "invalid_json", "empty request body: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return badRequest("", "invalid_json", "unexpected data after the JSON object")
	}
	return exactKeys(body, reflect.TypeOf(v), "")
}

// jsonError explains a decoding error, naming the field when it can.
func jsonError(err error) *APIError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badRequest("", "invalid_json", "invalid JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest("", "invalid_json", "the request must be a JSON object, got %s", typ.Value)
		}
		return badRequest(typ.Field, "invalid_type", "%s: got a JSON %s, want %s", typ.Field, typ.Value, jsonKind(typ.Type))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "invalid_json", "truncated JSON")
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return badRequest(f, "unknown_field", "unknown field %q", f)
	}
	return badRequest("", "invalid_json", "invalid request: %v", err)
}

// jsonKind names the JSON a Go type takes, for error messages (a client
// knows JSON, not this server's Go types).
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a JSON value"
}

// prompts parses the prompt field: a string, an array of strings, an array
// of token ids or an array of arrays of token ids. Each prompt is returned
// as text or as ids (the other nil).
func parsePrompt(raw json.RawMessage) (texts []string, ids [][]int32, e *APIError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, badRequest("prompt", "missing_prompt", "prompt is required")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		if len(many) == 0 {
			return nil, nil, badRequest("prompt", "empty_prompt", "prompt is an empty array")
		}
		return many, nil, nil
	}
	if toks, ok := tokenIDs(raw); ok {
		if len(toks) == 0 {
			return nil, nil, badRequest("prompt", "empty_prompt", "prompt is an empty array")
		}
		return nil, [][]int32{toks}, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) == nil && len(items) > 0 {
		tokss := make([][]int32, len(items))
		ok := true
		for i, it := range items {
			tokss[i], ok = tokenIDs(it)
			if !ok {
				break
			}
		}
		if ok {
			return nil, tokss, nil
		}
	}
	return nil, nil, badRequest("prompt", "invalid_type", "prompt must be a string, an array of strings, an array of token ids or an array of such arrays")
}

// tokenIDs decodes a JSON array of token ids (null: none). A null id is
// not one: encoding/json would read [1, null] as [1, 0].
func tokenIDs(raw json.RawMessage) ([]int32, bool) {
	var ps []*int32
	if json.Unmarshal(raw, &ps) != nil {
		return nil, false
	}
	ids := make([]int32, len(ps))
	for i, p := range ps {
		if p == nil {
			return nil, false
		}
		ids[i] = *p
	}
	return ids, true
}

// parseStop parses the stop field: null, a string or an array of up to 4
// strings.
func parseStop(raw json.RawMessage) ([]string, *APIError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []*string // a null is no string (encoding/json would read it as "")
	if err := json.Unmarshal(raw, &many); err != nil || slices.Contains(many, nil) {
		return nil, badRequest("stop", "invalid_type", "stop must be a string or an array of strings")
	}
	if len(many) > 4 {
		return nil, badRequest("stop", "too_many_stops", "stop has %d strings, at most 4", len(many))
	}
	stops := make([]string, len(many))
	for i, p := range many {
		stops[i] = *p
	}
	return stops, nil
}

// sampleParams validates the sampling fields.
func (req *CompletionRequest) sampleParams() (gpu.SampleParams, *APIError) {
	p := gpu.SampleParams{Temperature: 1, TopP: 1}
	if t := req.Temperature; t != nil {
		if !(*t >= 0 && *t <= 2) {
			return p, badRequest("temperature", "invalid_value", "temperature %g: want a number in [0, 2]", *t)
		}
		p.Temperature = float32(*t)
	}
	if t := req.TopP; t != nil {
		if !(*t > 0 && *t <= 1) {
			return p, badRequest("top_p", "invalid_value", "top_p %g: want a number in (0, 1]", *t)
		}
		p.TopP = float32(*t)
	}
	if k := req.TopK; k != nil {
		if *k < 0 {
			return p, badRequest("top_k", "invalid_value", "top_k %d: want 0 (off) or more", *k)
		}
		p.TopK = *k
	}
	return p, nil
}

// unsupported refuses the OpenAI fields this server implements only at
// their neutral value.
func (req *CompletionRequest) unsupported() *APIError {
	zero := func(name string, v *float64) *APIError {
		if v != nil && *v != 0 && !math.IsNaN(*v) {
			return badRequest(name, "unsupported", "%s is not supported (only 0)", name)
		}
		return nil
	}
	if e := zero("frequency_penalty", req.FrequencyPenalty); e != nil {
		return e
	}
	if e := zero("presence_penalty", req.PresencePenalty); e != nil {
		return e
	}
	if req.BestOf != nil && *req.BestOf != 1 {
		return badRequest("best_of", "unsupported", "best_of is not supported (only 1)")
	}
	if len(req.LogitBias) > 0 {
		return badRequest("logit_bias", "unsupported", "logit_bias is not supported")
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return badRequest("suffix", "unsupported", "suffix is not supported")
	}
	return nil
}

// requestLimits is what a request is checked against: the server's limits,
// the model's context and vocabulary, and whether it serves an adapter.
type requestLimits struct {
	MaxN, MaxTokens, MaxLogprobs, MaxChoices int
	Context, Vocab                           int
	Adapts, Caches                           bool
	ModelName                                string
	// TokenBytes is the longest token of the tokenizer, in bytes (0:
	// unknown): a text of more than Context-1 such tokens' bytes has more
	// tokens than the context holds, so it is refused unread: encoding
	// one long pre-token (a word, a run of digits) is slow, and a 1 MiB
	// word took about 2 s of CPU.
	TokenBytes int
}

// task checks the request against l and makes its task (tok encodes text
// prompts): the task, each prompt's text (for echo), and whether a stream
// ends with a usage chunk.
//
// (Over 80 lines: checks every field of the request against the limits in turn,
// each error naming its field.)
func (req *CompletionRequest) task(l requestLimits, tok *tokenizer.Tokenizer) (t *Task, prompts [][]byte, usage bool, e *APIError) {
	if e := req.unsupported(); e != nil {
		return nil, nil, false, e
	}
	if req.StreamOptions != nil {
		if !req.Stream {
			return nil, nil, false, badRequest("stream_options", "invalid_value", "stream_options needs stream: true")
		}
		usage = req.StreamOptions.IncludeUsage
	}
	t = &Task{N: 1, MaxTokens: 16, Logprobs: -1, Adapter: Adapter{On: l.Adapts, Cluster: -1}}
	if req.Adapt != nil {
		if *req.Adapt && !l.Adapts {
			return nil, nil, false, badRequest("adapt", "adaptation_unavailable", "adapt: this server serves %q without an adapter", l.ModelName)
		}
		t.Adapter.On = *req.Adapt
	}
	if req.Cache != nil {
		if *req.Cache && !l.Caches {
			return nil, nil, false, badRequest("cache", "cache_unavailable", "cache: this server runs no token cache memory (serve --cache)")
		}
		t.NoCache = !*req.Cache
	}
	if req.N != nil {
		if *req.N < 1 || *req.N > l.MaxN {
			return nil, nil, false, badRequest("n", "invalid_value", "n %d: want 1 to %d", *req.N, l.MaxN)
		}
		t.N = *req.N
	}
	if req.MaxTokens != nil {
		if *req.MaxTokens < 1 || *req.MaxTokens > l.MaxTokens {
			return nil, nil, false, badRequest("max_tokens", "invalid_value", "max_tokens %d: want 1 to %d", *req.MaxTokens, l.MaxTokens)
		}
		t.MaxTokens = *req.MaxTokens
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > l.MaxLogprobs {
			return nil, nil, false, badRequest("logprobs", "invalid_value", "logprobs %d: want 0 to %d", *req.Logprobs, l.MaxLogprobs)
		}
		t.Logprobs = *req.Logprobs
	}
	if t.Sample, e = req.sampleParams(); e != nil {
		return nil, nil, false, e
	}
	if t.Stop, e = parseStop(req.Stop); e != nil {
		return nil, nil, false, e
	}
	if req.Seed != nil {
		t.Seed = uint64(*req.Seed)
	} else {
		t.Seed = rand.Uint64()
	}
	texts, ids, e := parsePrompt(req.Prompt)
	if e != nil {
		return nil, nil, false, e
	}
	if n := max(len(texts), len(ids)) * t.N; n > l.MaxChoices {
		return nil, nil, false, badRequest("n", "too_many_choices", "%d prompts x n = %d choices, at most %d", max(len(texts), len(ids)), n, l.MaxChoices)
	}
	for i, text := range texts {
		if l.TokenBytes > 0 && len(text) > (l.Context-1)*l.TokenBytes {
			return nil, nil, false, badRequest("prompt", "context_length_exceeded", "prompt %d has %d bytes, more than the context of %d tokens holds (a token is at most %d bytes)", i, len(text), l.Context, l.TokenBytes)
		}
		p := tok.EncodeWithSpecial(text)
		if len(p) == 0 {
			return nil, nil, false, badRequest("prompt", "empty_prompt", "prompt %d is empty", i)
		}
		t.Prompts = append(t.Prompts, p)
		prompts = append(prompts, []byte(text))
	}
	for i, p := range ids {
		if len(p) == 0 {
			return nil, nil, false, badRequest("prompt", "empty_prompt", "prompt %d is empty", i)
		}
		for _, id := range p {
			if id < 0 || int(id) >= l.Vocab {
				return nil, nil, false, badRequest("prompt", "invalid_token", "prompt %d: token id %d outside the vocabulary of %d", i, id, l.Vocab)
			}
		}
		t.Prompts = append(t.Prompts, p)
		prompts = append(prompts, tok.Decode(p))
	}
	if req.MaxTokens == nil && req.untilContext {
		t.MaxTokens = contextLeft(t.Prompts, l)
	}
	for i, p := range t.Prompts {
		if len(p) >= l.Context {
			return nil, nil, false, badRequest("prompt", "context_length_exceeded", "prompt %d has %d tokens; the context holds %d, including at least one new token", i, len(p), l.Context)
		}
		if len(p)+t.MaxTokens > l.Context {
			return nil, nil, false, badRequest("max_tokens", "context_length_exceeded", "prompt %d has %d tokens + max_tokens %d exceeds the context of %d: lower max_tokens to %d or less", i, len(p), t.MaxTokens, l.Context, l.Context-len(p))
		}
	}
	return t, prompts, usage, nil
}

// contextLeft is the most new tokens every prompt has room for in the
// context, within the server's limit; at least 1, so that a prompt that
// fills the context is refused for its own length.
func contextLeft(prompts [][]int32, l requestLimits) int {
	n := l.MaxTokens
	for _, p := range prompts {
		n = min(n, l.Context-len(p))
	}
	return max(1, n)
}
