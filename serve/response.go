package serve

import (
	"encoding/json"
	"io"
)

// Completion is OpenAI's text_completion object: the response, and each
// chunk of a stream.
type Completion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"` // "text_completion"
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []Choice `json:"choices"`
	Usage   *Usage   `json:"usage,omitempty"`
}

// Choice is one continuation (in a stream: a piece of one).
type Choice struct {
	Text         string     `json:"text"`
	Index        int        `json:"index"`
	Logprobs     *Logprobs  `json:"logprobs"`
	FinishReason *string    `json:"finish_reason"` // "stop", "length"; null while streaming
	Chameleon    *Extension `json:"chameleon,omitempty"`
}

// Extension is Chameleon's object in every choice ("chameleon"): whether
// the choice's logits got a cluster's low-rank update, and which cluster.
type Extension struct {
	Adapted bool `json:"adapted"`
	// Cluster is the cluster whose update the choice got (the index of
	// the adapter's training centroid in online mode, of the factor pool
	// row in window mode, 0 for a static LoRA); null when not adapted.
	Cluster *int `json:"cluster"`
	// Mode is the server's adaptation mode: online, window or static; ""
	// on a server without an adapter.
	Mode string `json:"mode,omitempty"`
	// Reason says why a choice was not adapted: "no_adapter" (the server
	// has none), "request" ("adapt": false) or "gate" (the adapter's gate
	// or its self-check kept the base model for this prompt).
	Reason string `json:"reason,omitempty"`
	// Cache is the choice's token cache (chameleon serve --cache): its
	// memory pool and the weights it was admitted with; absent when off.
	Cache *CacheInfo `json:"cache,omitempty"`
}

// Logprobs are OpenAI's legacy per-token log-probabilities. Log-probs are
// those of the model (log-softmax of the logits at temperature 1, before
// top-k/top-p). Tokens cover the choice's text: those of a stop string and
// <|endoftext|> are not listed. With echo, the prompt's tokens come first
// with null logprobs (the server runs only the last position's logits).
// Token strings are the tokens' bytes; bytes that are not valid UTF-8 (part
// of a character) appear as U+FFFD, and top_logprobs keys that collapse so
// keep the most likely.
type Logprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float32           `json:"token_logprobs"`
	TopLogprobs   []map[string]float32 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"` // byte offset of each token in the choice's text
}

// Usage counts tokens: prompts once each (not per choice), and every
// generated token of every choice.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// choiceBuilder assembles a Choice from events.
type choiceBuilder struct {
	lp     bool // logprobs requested
	chat   bool // chat logprobs (content list) rather than the legacy ones
	echo   int  // bytes of echoed prompt before the generated text
	text   []byte
	lps    *Logprobs
	clps   []ChatTokenLogprob
	finish string
	ext    *Extension // from the events; nil before the first
}

// init starts choice i: the echoed prompt, if asked for.
func (c *choiceBuilder) init(s *Server, req *request, i int) {
	c.lp, c.chat = req.task.Logprobs >= 0, req.chat
	if c.lp && !c.chat {
		c.lps = &Logprobs{Tokens: []string{}, TokenLogprobs: []*float32{}, TopLogprobs: []map[string]float32{}, TextOffset: []int{}}
	}
	if !req.Echo {
		return
	}
	p := req.task.Prompts[i/req.task.N]
	c.text = append(c.text, req.prompts[i/req.task.N]...)
	c.echo = len(c.text)
	if c.lp {
		off := 0
		for _, id := range p {
			b := s.tok.TokenBytes(id)
			c.lps.Tokens = append(c.lps.Tokens, string(b))
			c.lps.TokenLogprobs = append(c.lps.TokenLogprobs, nil)
			c.lps.TopLogprobs = append(c.lps.TopLogprobs, nil)
			c.lps.TextOffset = append(c.lps.TextOffset, off)
			off += len(b)
		}
	}
}

// add appends an event's text and tokens.
func (c *choiceBuilder) add(s *Server, ev Event) {
	c.text = append(c.text, ev.Text...)
	if ev.Finish != "" {
		c.finish = ev.Finish
	}
	c.ext = s.extension(ev.Adapter)
	c.ext.Cache = ev.Cache
	if !c.lp {
		return
	}
	if c.chat {
		if c.clps == nil {
			c.clps = []ChatTokenLogprob{}
		}
		for _, t := range ev.Tokens {
			tl := ChatTokenLogprob{Token: s.tokenString(t.ID), Logprob: t.Logprob, Bytes: s.tokenBytes(t.ID), TopLogprobs: []ChatTopLogprob{}}
			for _, x := range t.Top {
				tl.TopLogprobs = append(tl.TopLogprobs, ChatTopLogprob{Token: s.tokenString(x.ID), Logprob: x.Logprob, Bytes: s.tokenBytes(x.ID)})
			}
			c.clps = append(c.clps, tl)
		}
		return
	}
	if c.lps == nil {
		c.lps = &Logprobs{Tokens: []string{}, TokenLogprobs: []*float32{}, TopLogprobs: []map[string]float32{}, TextOffset: []int{}}
	}
	for _, t := range ev.Tokens {
		lp := t.Logprob
		c.lps.Tokens = append(c.lps.Tokens, s.tokenString(t.ID))
		c.lps.TokenLogprobs = append(c.lps.TokenLogprobs, &lp)
		var top map[string]float32
		if len(t.Top) > 0 {
			top = make(map[string]float32, len(t.Top))
			for _, x := range t.Top {
				k := s.tokenString(x.ID)
				if _, dup := top[k]; !dup {
					top[k] = x.Logprob
				}
			}
		}
		c.lps.TopLogprobs = append(c.lps.TopLogprobs, top)
		c.lps.TextOffset = append(c.lps.TextOffset, c.echo+t.Offset)
	}
}

func (c *choiceBuilder) choice(i int) Choice {
	ch := Choice{Text: string(c.text), Index: i, Logprobs: c.lps, Chameleon: c.ext}
	if c.finish != "" {
		f := c.finish
		ch.FinishReason = &f
	}
	return ch
}

// chatChoice is the choice as a chat reply: the whole message, or with
// delta a stream's piece of it (content only when there is some).
func (c *choiceBuilder) chatChoice(i int, delta bool) ChatChoice {
	ch := ChatChoice{Index: i, Chameleon: c.ext}
	text := string(c.text)
	if delta {
		ch.Delta = &ChatReply{}
		if text != "" {
			ch.Delta.Content = &text
		}
	} else {
		ch.Message = &ChatReply{Role: "assistant", Content: &text}
	}
	if c.lp && (!delta || len(c.clps) > 0) {
		ch.Logprobs = &ChatLogprobs{Content: c.clps}
		if ch.Logprobs.Content == nil {
			ch.Logprobs.Content = []ChatTokenLogprob{}
		}
	}
	if c.finish != "" {
		f := c.finish
		ch.FinishReason = &f
	}
	return ch
}

// extension describes a sequence's adaptation for its choice.
func (s *Server) extension(a Adapter) *Extension {
	e := &Extension{Mode: s.adaptMode}
	switch {
	case !s.adapts:
		e.Reason = "no_adapter"
	case !a.On:
		e.Reason = "request"
	case a.Cluster < 0:
		e.Reason = "gate"
	default:
		c := a.Cluster
		e.Adapted, e.Cluster = true, &c
	}
	return e
}

// tokenBytes is a token's bytes as a JSON array of numbers (never null).
func (s *Server) tokenBytes(id int32) []int {
	out := []int{}
	if int(id) < s.tok.VocabSize() {
		for _, b := range s.tok.TokenBytes(id) {
			out = append(out, int(b))
		}
	}
	return out
}

// tokenString is a token's text ("" for ids the tokenizer lacks).
func (s *Server) tokenString(id int32) string {
	if int(id) >= s.tok.VocabSize() {
		return ""
	}
	return string(s.tok.TokenBytes(id))
}

// writeEvent writes one server-sent event "data: <json>"; nil writes
// nothing (the caller only flushes).
func writeEvent(w io.Writer, v any) error {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"error": map[string]string{"message": err.Error(), "type": "server_error"}})
	}
	_, err = w.Write(append(append([]byte("data: "), b...), '\n', '\n'))
	return err
}
