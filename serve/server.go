package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// Server is the HTTP API in front of a Scheduler. It is an http.Handler:
//
//	POST /v1/completions       OpenAI-compatible completions (stream: server-sent events)
//	POST /v1/chat/completions  OpenAI-compatible chat (stream: chat.completion.chunk events)
//	GET  /v1/models            the one served model
//	POST /tokenize             text (or chat messages) to token ids
//	POST /detokenize           token ids to text
//	GET  /health, /healthz     200 {"status":"ok",...}; 503 after a device loss or during shutdown
//	GET  /metrics              Prometheus metrics
//
// Every choice carries the extension object "chameleon" (Extension).
// Options.Log, CORSOrigins and APIKey add a request log, CORS and a key.
type Server struct {
	sched     *Scheduler
	tok       *tokenizer.Tokenizer
	cfg       model.Config
	opt       Options
	met       *metrics
	backend   string
	adapts    bool   // the model adapts: requests are adapted unless "adapt": false
	adaptMode string // its mode (AdaptMode), "" without adaptation
	chat      *ChatTemplate
	created   int64
	metrics   http.Handler
	handler   http.Handler // the routes behind the log, CORS and key layers
	nextID    atomic.Uint64
	// maxTokenBytes is the longest token's length in bytes: a text prompt
	// longer than the context's worth of such tokens cannot fit, and is
	// refused before the tokenizer spends time on it.
	maxTokenBytes int
}

// New starts a scheduler on m and returns the server. tok must cover the
// ids m can produce that a client will see as text.
func New(m Model, tok *tokenizer.Tokenizer, opt Options) (*Server, error) {
	met := newMetrics(nil)
	sched, err := newScheduler(m, tok, opt, met)
	if err != nil {
		return nil, err
	}
	s := &Server{
		sched: sched, tok: tok, cfg: m.Config(), opt: sched.Options(), met: met,
		backend: m.Backend().Name(), adapts: m.Adapts(), created: time.Now().Unix(),
		metrics: promhttp.HandlerFor(met.reg, promhttp.HandlerOpts{}), chat: opt.Chat,
	}
	for id := range tok.VocabSize() {
		s.maxTokenBytes = max(s.maxTokenBytes, len(tok.TokenBytes(int32(id))))
	}
	if ad, ok := m.(*Adaptive); ok {
		s.adaptMode = string(ad.Mode) // another Model that adapts reports no mode
	}
	if s.chat == nil {
		eot := string(tok.TokenBytes(tok.EOT()))
		s.chat = DefaultChat(eot, eot)
	}
	s.handler = logged(opt.Log, cors(opt.CORSOrigins, authorized(opt.APIKey, http.HandlerFunc(s.route))))
	return s, nil
}

// ChatTemplate is the template chat requests are rendered with.
func (s *Server) ChatTemplate() *ChatTemplate { return s.chat }

// Scheduler returns the server's scheduler.
func (s *Server) Scheduler() *Scheduler { return s.sched }

// Shutdown stops accepting completions (they get 503) and waits for the
// queued and running ones until ctx ends; then those left fail with 503.
// Stop the http.Server (its Shutdown) alongside: this ends the work the
// handlers wait for.
func (s *Server) Shutdown(ctx context.Context) error { return s.sched.Shutdown(ctx) }

// ServeHTTP serves the API: the request log, CORS and the API key, then
// the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// route routes the API.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	method := func(want string) bool {
		if r.Method == want || (want == http.MethodGet && r.Method == http.MethodHead) {
			return true
		}
		w.Header().Set("Allow", want)
		writeError(w, &APIError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Code: "method_not_allowed",
			Message: fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, want)})
		return false
	}
	switch r.URL.Path {
	case "/v1/completions":
		if method(http.MethodPost) {
			s.completions(w, r, false)
		}
	case "/v1/chat/completions":
		if method(http.MethodPost) {
			s.completions(w, r, true)
		}
	case "/tokenize":
		if method(http.MethodPost) {
			s.tokenize(w, r)
		}
	case "/detokenize":
		if method(http.MethodPost) {
			s.detokenize(w, r)
		}
	case "/v1/models":
		if method(http.MethodGet) {
			writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{s.modelCard()}})
		}
	case "/v1/models/" + s.opt.ModelName:
		if method(http.MethodGet) {
			writeJSON(w, http.StatusOK, s.modelCard())
		}
	case "/health", "/healthz":
		if method(http.MethodGet) {
			s.healthz(w)
		}
	case "/metrics":
		if method(http.MethodGet) {
			s.metrics.ServeHTTP(w, r)
		}
	default:
		entry(r).errCode = "not_found"
		writeError(w, &APIError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "not_found",
			Message: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	}
}

func (s *Server) modelCard() map[string]any {
	return map[string]any{"id": s.opt.ModelName, "object": "model", "created": s.created, "owned_by": "chameleon",
		"context_length": s.cfg.NCtx}
}

func (s *Server) healthz(w http.ResponseWriter) {
	st := s.sched.Stats()
	body := map[string]any{"model": s.opt.ModelName, "backend": s.backend, "slots": s.opt.Slots,
		"queued": st.Queued, "running": st.Running, "adapts": s.adapts}
	if st.Memory != nil { // --cache: the token cache memory's size
		body["cache_memory"] = st.Memory
	}
	if err := s.sched.Health(); err != nil {
		body["status"], body["error"] = "unavailable", err.Error()
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	body["status"] = "ok"
	writeJSON(w, http.StatusOK, body)
}

// request is a validated completion request.
type request struct {
	*CompletionRequest
	task    *Task
	prompts [][]byte // each prompt's text (for echo)
	id      string
	stream  bool
	usage   bool // stream: send a usage chunk
	chat    bool // a chat completion
}

// completions answers POST /v1/completions, or /v1/chat/completions with
// chat: the messages are rendered with the chat template into the one
// prompt, and the answer is in the chat API's shapes.
func (s *Server) completions(rw http.ResponseWriter, r *http.Request, chat bool) {
	t0 := time.Now()
	w := &countingWriter{ResponseWriter: rw}
	gone := false // the client left before the response was complete
	defer func() {
		code := strconv.Itoa(w.code)
		if gone || (r.Context().Err() != nil && w.code == 0) {
			code = "499" // nginx's "client closed request"
		}
		s.met.requests.WithLabelValues(code).Inc()
		s.met.latency.Observe(time.Since(t0).Seconds())
	}()
	defer func() { // a programmer error in a handler is a 500, not a crash
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			if w.code == 0 {
				writeError(w, &APIError{Status: http.StatusInternalServerError, Type: "server_error", Code: "internal_error",
					Message: fmt.Sprintf("internal error: %v", p)})
			}
		}
	}()
	le := entry(r)
	fail := func(e *APIError) { fail(w, r, e) }
	if e := checkJSON(r); e != nil {
		fail(e)
		return
	}
	var body *CompletionRequest
	var stops []string // the chat template's
	var c ChatCompletionRequest
	if chat {
		if e := decodeJSON(r, s.opt.MaxBodyBytes, w, &c); e != nil {
			fail(e)
			return
		}
		var e *APIError
		if body, e = s.chatPrompt(&c); e != nil {
			fail(e)
			return
		}
		stops = s.chat.Stops
	} else {
		body = new(CompletionRequest)
		if e := decodeJSON(r, s.opt.MaxBodyBytes, w, body); e != nil {
			fail(e)
			return
		}
	}
	req, e := s.validate(body, chat)
	if e != nil {
		if chat {
			c.chatError(e)
		}
		fail(e)
		return
	}
	req.task.Stop = append(req.task.Stop, stops...)
	le.id, le.stream = req.id, req.stream
	run, err := s.sched.Submit(r.Context(), req.task)
	if err != nil {
		fail(runError(err, s.opt.RetryAfter))
		return
	}
	le.promptTokens = run.PromptTokens
	s.met.promptTokens.Add(float64(run.PromptTokens))
	if req.stream {
		gone = !s.stream(w, r, req, run)
	} else {
		gone = !s.collect(w, r, req, run)
	}
}

// validate checks a request against the model and the limits and makes
// its task.
func (s *Server) validate(body *CompletionRequest, chat bool) (*request, *APIError) {
	req := &request{CompletionRequest: body, stream: body.Stream, chat: chat}
	prefix := "cmpl"
	if chat {
		prefix = "chatcmpl"
	}
	req.id = fmt.Sprintf("%s-%x-%d", prefix, s.created, s.nextID.Add(1))
	if e := s.checkModel(body.Model); e != nil {
		return nil, e
	}
	l := requestLimits{MaxN: s.opt.MaxN, MaxTokens: s.opt.MaxTokens, MaxLogprobs: s.opt.MaxLogprobs, MaxChoices: s.opt.MaxChoices,
		Context: s.cfg.NCtx, Vocab: min(s.cfg.VocabSize, s.tok.VocabSize()), Adapts: s.adapts, Caches: s.opt.Cache, ModelName: s.opt.ModelName,
		TokenBytes: s.maxTokenBytes}
	var e *APIError
	if req.task, req.prompts, req.usage, e = body.task(l, s.tok); e != nil {
		return nil, e
	}
	return req, nil
}

// collect answers a non-streaming request once every choice is done. It
// returns false when the client left first.
func (s *Server) collect(w http.ResponseWriter, r *http.Request, req *request, run *Run) bool {
	events, err := run.Wait(r.Context())
	if err != nil {
		if r.Context().Err() != nil {
			return false // the client is gone; the scheduler has dropped the run
		}
		e := runError(err, s.opt.RetryAfter)
		entry(r).errCode = e.Code
		writeError(w, e)
		return true
	}
	n := len(req.task.Prompts) * req.task.N
	choices := make([]choiceBuilder, n)
	for i := range choices {
		choices[i].init(s, req, i)
	}
	le := entry(r)
	completion := 0
	for _, ev := range events {
		choices[ev.Index].add(s, ev)
		completion += ev.CompletionTokens
		le.note(ev)
	}
	usage := &Usage{PromptTokens: run.PromptTokens, CompletionTokens: completion, TotalTokens: run.PromptTokens + completion}
	if req.chat {
		resp := ChatCompletion{ID: req.id, Object: "chat.completion", Created: time.Now().Unix(), Model: s.opt.ModelName, Usage: usage}
		for i := range choices {
			resp.Choices = append(resp.Choices, choices[i].chatChoice(i, false))
		}
		return writeJSON(w, http.StatusOK, resp) == nil
	}
	resp := Completion{ID: req.id, Object: "text_completion", Created: time.Now().Unix(), Model: s.opt.ModelName, Usage: usage}
	for i := range choices {
		resp.Choices = append(resp.Choices, choices[i].choice(i))
	}
	return writeJSON(w, http.StatusOK, resp) == nil
}

// note counts a choice's last event in the request's log line.
func (e *logEntry) note(ev Event) {
	if ev.Finish == "" {
		return
	}
	e.completionTokens += ev.CompletionTokens
	if ev.Adapter.On && ev.Adapter.Cluster >= 0 {
		e.adapted++
		e.clusters = append(e.clusters, ev.Adapter.Cluster)
	} else {
		e.base++
	}
}

// stream answers with server-sent events as the scheduler produces text:
// one chunk per event, the prompt first with echo, a usage chunk with
// stream_options.include_usage, then "data: [DONE]". A chat stream's
// chunks are chat.completion.chunk objects, a choice's first one carrying
// the delta {"role": "assistant", "content": ""}. The status line goes
// out with the first chunk, so a run that fails before producing anything
// gets its HTTP error (503 for a lost device); a failure after that is sent
// as a last {"error": ...} event, without [DONE]. It returns false when
// the client left (or stopped reading) before the end; its run is then
// abandoned.
//
// (Over 80 lines: the event loop of a stream: the first event's HTTP error,
// each event's encoding, the usage chunk and the client leaving share one
// writer.)
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req *request, run *Run) bool {
	rc := http.NewResponseController(w)
	le := entry(r)
	started, broken := false, false
	send := func(v any) {
		if broken {
			return
		}
		if !started {
			started = true
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
		}
		if writeEvent(w, v) != nil || rc.Flush() != nil {
			broken = true // a client that is gone or stopped reading
		}
	}
	chunk := func(c Choice) Completion {
		return Completion{ID: req.id, Object: "text_completion", Created: time.Now().Unix(), Model: s.opt.ModelName, Choices: []Choice{c}}
	}
	chatChunk := func(c ChatChoice) ChatCompletion {
		return ChatCompletion{ID: req.id, Object: "chat.completion.chunk", Created: time.Now().Unix(), Model: s.opt.ModelName, Choices: []ChatChoice{c}}
	}
	n := len(req.task.Prompts) * req.task.N
	echo := make([]int, n) // bytes of echoed prompt per choice
	if req.Echo {
		for i := 0; i < n; i++ {
			var cb choiceBuilder
			cb.init(s, req, i)
			echo[i] = cb.echo
			send(chunk(cb.choice(i)))
		}
	}
	roleSent := make([]bool, n) // chat: the choice's first chunk has gone
	completion := 0
	for !broken {
		events, err := run.Next(r.Context())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			switch {
			case r.Context().Err() != nil: // the client is gone
				return false
			case !started:
				e := runError(err, s.opt.RetryAfter)
				le.errCode = e.Code
				writeError(w, e)
			default:
				e := runError(err, 0)
				le.errCode = e.Code
				send(map[string]*APIError{"error": e})
			}
			return !broken
		}
		for _, ev := range events {
			cb := choiceBuilder{lp: req.task.Logprobs >= 0, chat: req.chat, echo: echo[ev.Index]}
			cb.add(s, ev)
			completion += ev.CompletionTokens
			le.note(ev)
			if req.chat {
				if !roleSent[ev.Index] {
					roleSent[ev.Index] = true
					empty := ""
					send(chatChunk(ChatChoice{Index: ev.Index, Delta: &ChatReply{Role: "assistant", Content: &empty}, Chameleon: cb.ext}))
				}
				c := cb.chatChoice(ev.Index, true)
				if c.FinishReason == nil && c.Delta.Content == nil && c.Logprobs == nil {
					continue
				}
				send(chatChunk(c))
				continue
			}
			c := cb.choice(ev.Index)
			if c.FinishReason == nil && c.Text == "" && c.Logprobs == nil {
				continue
			}
			send(chunk(c))
		}
	}
	if req.usage {
		usage := &Usage{PromptTokens: run.PromptTokens, CompletionTokens: completion, TotalTokens: run.PromptTokens + completion}
		if req.chat {
			send(ChatCompletion{ID: req.id, Object: "chat.completion.chunk", Created: time.Now().Unix(), Model: s.opt.ModelName,
				Choices: []ChatChoice{}, Usage: usage})
		} else {
			send(Completion{ID: req.id, Object: "text_completion", Created: time.Now().Unix(), Model: s.opt.ModelName, Choices: []Choice{}, Usage: usage})
		}
	}
	send(nil)
	if broken {
		return false
	}
	_, err1 := io.WriteString(w, "data: [DONE]\n\n")
	err2 := rc.Flush()
	return err1 == nil && err2 == nil
}
