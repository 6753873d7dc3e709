package serve

import (
	"fmt"
	"net/http"
)

// TokenizeRequest is the body of POST /tokenize: exactly one of content
// (llama-server's name), prompt (vLLM's) or messages (rendered with the
// chat template first, as /v1/chat/completions would, so that a client
// can count a conversation's tokens). Special tokens in the text
// (<|endoftext|>) are read as such, as in a completion's prompt.
type TokenizeRequest struct {
	Model      string        `json:"model"`
	Content    *string       `json:"content"`
	Prompt     *string       `json:"prompt"`
	Messages   []ChatMessage `json:"messages"`
	WithPieces bool          `json:"with_pieces"` // add each token's text
	// AddGenerationPrompt, for messages: end with the assistant's turn
	// opened (default true, as a chat completion does).
	AddGenerationPrompt *bool `json:"add_generation_prompt"`
}

// TokenizeResponse is /tokenize's answer.
type TokenizeResponse struct {
	Tokens      []int32  `json:"tokens"`
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`    // the context, in tokens
	Pieces      []string `json:"pieces,omitempty"` // with_pieces: each token's text (bytes that are not UTF-8 as U+FFFD)
	Prompt      *string  `json:"prompt,omitempty"` // for messages: the rendered prompt
}

// DetokenizeRequest is the body of POST /detokenize.
type DetokenizeRequest struct {
	Model  string  `json:"model"`
	Tokens []int32 `json:"tokens"`
}

// DetokenizeResponse is /detokenize's answer: the tokens' text (bytes that
// are not UTF-8, part of a character, as U+FFFD).
type DetokenizeResponse struct {
	Content string `json:"content"`
}

// readBody decodes a JSON request body into v and checks its model field
// (*model); it answers the error itself and returns false on failure.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, v any, model *string) bool {
	e := checkJSON(r)
	if e == nil {
		e = decodeJSON(r, s.opt.MaxBodyBytes, w, v)
	}
	if e == nil {
		e = s.checkModel(*model)
	}
	if e != nil {
		fail(w, r, e)
		return false
	}
	return true
}

// fail answers e and notes its code in the request's log line.
func fail(w http.ResponseWriter, r *http.Request, e *APIError) {
	entry(r).errCode = e.Code
	writeError(w, e)
}

func (s *Server) tokenize(w http.ResponseWriter, r *http.Request) {
	var req TokenizeRequest
	if !s.readBody(w, r, &req, &req.Model) {
		return
	}
	fail := func(e *APIError) { fail(w, r, e) }
	given := 0
	for _, b := range []bool{req.Content != nil, req.Prompt != nil, req.Messages != nil} {
		if b {
			given++
		}
	}
	if given != 1 {
		fail(badRequest("content", "invalid_value", "give exactly one of content, prompt or messages"))
		return
	}
	var text string
	var resp TokenizeResponse
	switch {
	case req.Content != nil:
		text = *req.Content
	case req.Prompt != nil:
		text = *req.Prompt
	default:
		if len(req.Messages) == 0 {
			fail(badRequest("messages", "missing_messages", "messages is an empty array"))
			return
		}
		for i := range req.Messages {
			if e := req.Messages[i].parse(i); e != nil {
				fail(e)
				return
			}
		}
		gen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
		var err error
		if text, err = s.chat.Render(req.Messages, gen); err != nil {
			fail(badRequest("messages", "chat_template_error", "%v", err))
			return
		}
		resp.Prompt = &text
	}
	resp.Tokens = s.tok.EncodeWithSpecial(text)
	if resp.Tokens == nil {
		resp.Tokens = []int32{}
	}
	resp.Count, resp.MaxModelLen = len(resp.Tokens), s.cfg.NCtx
	if req.WithPieces {
		resp.Pieces = make([]string, len(resp.Tokens))
		for i, id := range resp.Tokens {
			resp.Pieces[i] = s.tokenString(id)
		}
	}
	writeJSON(w, http.StatusOK, resp) //nolint:errcheck // the client may be gone
}

func (s *Server) detokenize(w http.ResponseWriter, r *http.Request) {
	var req DetokenizeRequest
	if !s.readBody(w, r, &req, &req.Model) {
		return
	}
	fail := func(e *APIError) { fail(w, r, e) }
	if req.Tokens == nil {
		fail(badRequest("tokens", "missing_tokens", "tokens is required: an array of token ids"))
		return
	}
	v := min(s.cfg.VocabSize, s.tok.VocabSize())
	for i, id := range req.Tokens {
		if id < 0 || int(id) >= v {
			fail(badRequest("tokens", "invalid_token", "tokens[%d] = %d is outside the vocabulary of %d", i, id, v))
			return
		}
	}
	writeJSON(w, http.StatusOK, DetokenizeResponse{Content: string(s.tok.Decode(req.Tokens))}) //nolint:errcheck
}

// checkModel refuses a model field that names another model ("" is this one).
func (s *Server) checkModel(name string) *APIError {
	if name != "" && name != s.opt.ModelName {
		return &APIError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "model", Code: "model_not_found",
			Message: fmt.Sprintf("model %q does not exist; this server serves %q", name, s.opt.ModelName)}
	}
	return nil
}
