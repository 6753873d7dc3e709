package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/ardanlabs/jinja"
)

// DefaultChatTemplate renders a conversation for a base model, which has
// never seen chat markup: a plain-text transcript. System (and developer)
// messages come first as bare paragraphs, then one "Role: content" line
// per message ("User: ...", "Assistant: ..."), and the prompt ends with
// "Assistant:" for the model to continue. DefaultChatStops end the reply
// where the model starts the user's next turn.
const DefaultChatTemplate = `{%- for message in messages -%}
{%- if message.role == 'system' or message.role == 'developer' -%}
{{ message.content }}

{% else -%}
{{ message.role | capitalize }}: {{ message.content }}
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}Assistant:{%- endif -%}`

// DefaultChatStops are the stop strings DefaultChatTemplate adds to every
// chat request (besides the request's own).
var DefaultChatStops = []string{"\nUser:"}

// ChatTemplate turns chat messages into a prompt: a compiled Jinja
// template (Hugging Face's convention: variables messages,
// add_generation_prompt, bos_token, eos_token) and the stop strings added
// to every chat request. Safe for concurrent use.
type ChatTemplate struct {
	Source string   // the template's Jinja source
	Origin string   // where it came from, for logs: "GGUF tokenizer.chat_template", a file name, "default"
	Stops  []string // added to each chat request's stop strings
	BOS    string   // bos_token
	EOS    string   // eos_token
	t      *jinja.Template
}

// NewChatTemplate compiles src. An error names the origin.
func NewChatTemplate(src, origin string, stops []string, bos, eos string) (*ChatTemplate, error) {
	t, err := jinja.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("serve: chat template (%s): %w", origin, err)
	}
	return &ChatTemplate{Source: src, Origin: origin, Stops: stops, BOS: bos, EOS: eos, t: t}, nil
}

// DefaultChat is DefaultChatTemplate with DefaultChatStops; bos and eos
// are the tokenizer's special tokens (GPT-2: both "<|endoftext|>").
func DefaultChat(bos, eos string) *ChatTemplate {
	ct, err := NewChatTemplate(DefaultChatTemplate, "default (plain-text transcript)", DefaultChatStops, bos, eos)
	if err != nil {
		panic(err) // a constant that compiles in the tests
	}
	return ct
}

// Render is the prompt for msgs, ending with the assistant's turn opened
// when generation is true. A message whose content is not text is an
// error (an *APIError naming it).
func (ct *ChatTemplate) Render(msgs []ChatMessage, generation bool) (string, error) {
	list := make([]any, len(msgs))
	for i, m := range msgs {
		if e := m.parse(i); e != nil {
			return "", e
		}
		mm := map[string]any{"role": m.Role, "content": m.text}
		if m.Name != "" {
			mm["name"] = m.Name
		}
		list[i] = mm
	}
	out, err := ct.t.Render(map[string]any{"messages": list, "add_generation_prompt": generation,
		"bos_token": ct.BOS, "eos_token": ct.EOS})
	if err != nil {
		return "", fmt.Errorf("rendering the chat template (%s): %w", ct.Origin, err)
	}
	return out, nil
}

// ChatTemplateFromTokenizerConfig reads chat_template from a Hugging Face
// tokenizer_config.json: a string, or a list of {"name", "template"} of
// which "default" (else the first) is taken. ok is false when the file has
// none. bos and eos are its bos_token and eos_token when they are strings
// (or {"content": ...} objects).
func ChatTemplateFromTokenizerConfig(b []byte) (src, bos, eos string, ok bool, err error) {
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
		BOS          json.RawMessage `json:"bos_token"`
		EOS          json.RawMessage `json:"eos_token"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", "", "", false, fmt.Errorf("tokenizer_config.json: %w", err)
	}
	special := func(raw json.RawMessage) string {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		var o struct{ Content string }
		if json.Unmarshal(raw, &o) == nil {
			return o.Content
		}
		return ""
	}
	bos, eos = special(cfg.BOS), special(cfg.EOS)
	raw := bytes.TrimSpace(cfg.ChatTemplate)
	if len(raw) == 0 || string(raw) == "null" {
		return "", bos, eos, false, nil
	}
	if json.Unmarshal(raw, &src) == nil {
		return src, bos, eos, src != "", nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", "", "", false, fmt.Errorf("tokenizer_config.json: chat_template is neither a string nor a list of {name, template}")
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, bos, eos, n.Template != "", nil
		}
	}
	if len(named) > 0 {
		return named[0].Template, bos, eos, named[0].Template != "", nil
	}
	return "", bos, eos, false, nil
}

// ChatRoles are the roles a chat message may have (OpenAI's; "function",
// deprecated there, is not taken).
var ChatRoles = []string{"system", "developer", "user", "assistant", "tool"}

// ChatMessage is one message of a chat request. Role is one of ChatRoles.
// Content is a string or an array of parts of which only {"type": "text",
// "text": ...} are accepted; it is required, even of an assistant message
// (null content is OpenAI's for an assistant turn that only called tools,
// and this server takes no tool calls).
type ChatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name,omitempty"`
	text    string          // Content as text, set by parse
}

// parse checks the message and sets its text.
func (m *ChatMessage) parse(i int) *APIError {
	param := fmt.Sprintf("messages[%d]", i)
	if strings.TrimSpace(m.Role) == "" {
		return badRequest(param+".role", "missing_role", "%s has no role", param)
	}
	if !slices.Contains(ChatRoles, m.Role) {
		return badRequest(param+".role", "invalid_value", "%s.role is %q: it must be one of %s",
			param, m.Role, strings.Join(ChatRoles, ", "))
	}
	raw := bytes.TrimSpace(m.Content)
	if len(raw) == 0 || string(raw) == "null" {
		return badRequest(param+".content", "missing_content",
			"%s (role %s) has no content: a string or an array of text parts is required", param, m.Role)
	}
	if json.Unmarshal(raw, &m.text) == nil {
		return nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return badRequest(param+".content", "invalid_type", "%s.content must be a string or an array of text parts", param)
	}
	var sb strings.Builder
	for j, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return badRequest(fmt.Sprintf("%s.content[%d]", param, j), "unsupported",
				"%s.content[%d] has type %q: this model reads text parts only", param, j, p.Type)
		}
		sb.WriteString(*p.Text)
	}
	m.text = sb.String()
	return nil
}

// ChatCompletionRequest is the body of POST /v1/chat/completions. Unknown
// fields are refused; the fields shared with CompletionRequest mean the
// same (and the same neutral-value rule holds), but for max_tokens, whose
// default here is the rest of the context (OpenAI's chat API has no
// default cap; a reply still ends at the template's stop strings).
// logprobs is a boolean here, with top_logprobs the number of
// alternatives per token.
type ChatCompletionRequest struct {
	Model               string          `json:"model"`
	Messages            []ChatMessage   `json:"messages"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"` // OpenAI's newer name; wins over max_tokens
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	TopK                *int            `json:"top_k"`
	Stop                json.RawMessage `json:"stop"`
	Seed                *int64          `json:"seed"`
	N                   *int            `json:"n"`
	Logprobs            *bool           `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	User  string `json:"user"`
	Adapt *bool  `json:"adapt"`
	Cache *bool  `json:"cache"` // as CompletionRequest.Cache

	FrequencyPenalty *float64           `json:"frequency_penalty"`
	PresencePenalty  *float64           `json:"presence_penalty"`
	LogitBias        map[string]float64 `json:"logit_bias"`
}

// completion maps a chat request onto the completion request it is run
// as, prompt being the rendered messages.
func (c *ChatCompletionRequest) completion(prompt string) (*CompletionRequest, *APIError) {
	p, _ := json.Marshal(prompt)
	req := &CompletionRequest{Model: c.Model, Prompt: p, MaxTokens: c.MaxTokens, Temperature: c.Temperature,
		TopP: c.TopP, TopK: c.TopK, Stop: c.Stop, Seed: c.Seed, N: c.N, Stream: c.Stream, StreamOptions: c.StreamOptions,
		User: c.User, Adapt: c.Adapt, Cache: c.Cache, FrequencyPenalty: c.FrequencyPenalty, PresencePenalty: c.PresencePenalty,
		LogitBias: c.LogitBias}
	if c.MaxCompletionTokens != nil {
		req.MaxTokens = c.MaxCompletionTokens
	}
	req.untilContext = true
	switch {
	case c.Logprobs != nil && *c.Logprobs:
		k := 0
		if c.TopLogprobs != nil {
			k = *c.TopLogprobs
		}
		req.Logprobs = &k
	case c.TopLogprobs != nil:
		return nil, badRequest("top_logprobs", "invalid_value", "top_logprobs needs logprobs: true")
	}
	return req, nil
}

// chatError rewords an error about the completion request a chat request
// runs as in the chat request's own terms: the prompt is the rendered
// messages, logprobs' count is top_logprobs, and max_tokens is
// max_completion_tokens when that was the field sent.
func (c *ChatCompletionRequest) chatError(e *APIError) {
	e.Message = strings.Replace(e.Message, "prompt 0", "the rendered messages", 1)
	switch {
	case e.Param == "prompt":
		e.Param = "messages"
	case e.Param == "logprobs":
		e.Param, e.Message = "top_logprobs", strings.Replace(e.Message, "logprobs", "top_logprobs", 1)
	case e.Param == "max_tokens" && c.MaxCompletionTokens != nil:
		e.Param, e.Message = "max_completion_tokens", strings.ReplaceAll(e.Message, "max_tokens", "max_completion_tokens")
	}
}

// ChatCompletion is OpenAI's chat.completion object, and with Object
// "chat.completion.chunk" each chunk of a stream.
type ChatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage,omitempty"`
}

// ChatChoice is one reply (Message), or in a stream a piece of one (Delta).
type ChatChoice struct {
	Index        int           `json:"index"`
	Message      *ChatReply    `json:"message,omitempty"`
	Delta        *ChatReply    `json:"delta,omitempty"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
	Chameleon    *Extension    `json:"chameleon,omitempty"`
}

// ChatReply is the assistant's message (or a delta of it: role on the
// first chunk only, content on the others).
type ChatReply struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// ChatLogprobs are the chat API's per-token log-probabilities.
type ChatLogprobs struct {
	Content []ChatTokenLogprob `json:"content"`
}

// ChatTokenLogprob is one token, its log-probability, its bytes and the
// most likely alternatives at its step.
type ChatTokenLogprob struct {
	Token       string           `json:"token"`
	Logprob     float32          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []ChatTopLogprob `json:"top_logprobs"`
}

// ChatTopLogprob is one alternative token.
type ChatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float32 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// chatPrompt checks a chat request's messages, renders them with the chat
// template and returns the completion request to run.
func (s *Server) chatPrompt(c *ChatCompletionRequest) (*CompletionRequest, *APIError) {
	if len(c.Messages) == 0 {
		return nil, badRequest("messages", "missing_messages", "messages is required: a non-empty array of {role, content}")
	}
	for i := range c.Messages {
		if e := c.Messages[i].parse(i); e != nil {
			return nil, e
		}
	}
	prompt, err := s.chat.Render(c.Messages, true)
	if err != nil {
		return nil, badRequest("messages", "chat_template_error", "%v", err)
	}
	if prompt == "" {
		return nil, badRequest("messages", "empty_prompt", "the chat template (%s) rendered these messages as an empty prompt", s.chat.Origin)
	}
	return c.completion(prompt)
}
