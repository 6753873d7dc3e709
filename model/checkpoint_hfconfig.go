package model

// Hugging Face config.json: what LoadHF reads from it and what SaveHF writes.

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// hfConfig is the part of a Hugging Face GPT2Config that Chameleon reads or
// must refuse. Pointers tell absent fields from zero ones.
type hfConfig struct {
	ModelType         *string  `json:"model_type"`
	VocabSize         *int     `json:"vocab_size"`
	NPositions        *int     `json:"n_positions"`
	NCtx              *int     `json:"n_ctx"`
	NEmbd             *int     `json:"n_embd"`
	NHead             *int     `json:"n_head"`
	NLayer            *int     `json:"n_layer"`
	NInner            *int     `json:"n_inner"`
	LNEps             *float64 `json:"layer_norm_epsilon"`
	Activation        *string  `json:"activation_function"`
	ScaleAttnWeights  *bool    `json:"scale_attn_weights"`
	ScaleAttnByLayer  *bool    `json:"scale_attn_by_inverse_layer_idx"`
	AddCrossAttention *bool    `json:"add_cross_attention"`
	TieWordEmbeddings *bool    `json:"tie_word_embeddings"`
}

// parseHFConfig reads config.json. Absent sizes take GPT2Config's defaults
// (those of the 124M "gpt2"), as transformers does; settings that change the
// computation away from what Chameleon implements are refused. requireHead is
// set when the config unties the output projection, so the checkpoint must
// hold lm_head.weight (which must still equal wte).
func parseHFConfig(data []byte) (cfg Config, requireHead bool, err error) {
	if err := checkConfigKeys(data); err != nil {
		return Config{}, false, err
	}
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return Config{}, false, fmt.Errorf("not a valid config.json: %w", err)
	}
	if h.ModelType != nil && *h.ModelType != "gpt2" {
		return Config{}, false, fmt.Errorf("model_type is %q; only gpt2 is supported", *h.ModelType)
	}
	def := Configs["gpt2"]
	pick := func(p *int, d int) int {
		if p != nil {
			return *p
		}
		return d
	}
	cfg = Config{
		VocabSize: pick(h.VocabSize, def.VocabSize),
		NCtx:      pick(h.NPositions, pick(h.NCtx, def.NCtx)),
		NEmbd:     pick(h.NEmbd, def.NEmbd),
		NHead:     pick(h.NHead, def.NHead),
		NLayer:    pick(h.NLayer, def.NLayer),
		LNEps:     def.LNEps,
	}
	if h.LNEps != nil {
		cfg.LNEps = float32(*h.LNEps)
	}
	switch {
	case h.NPositions != nil && h.NCtx != nil && *h.NPositions != *h.NCtx:
		return Config{}, false, fmt.Errorf("n_positions %d and n_ctx %d disagree", *h.NPositions, *h.NCtx)
	case h.NInner != nil && *h.NInner != 4*cfg.NEmbd:
		return Config{}, false, fmt.Errorf("n_inner %d is not supported: the MLP must be 4*n_embd = %d wide", *h.NInner, 4*cfg.NEmbd)
	case h.Activation != nil && *h.Activation != "gelu_new" && *h.Activation != "gelu_pytorch_tanh":
		return Config{}, false, fmt.Errorf("activation_function %q is not supported (only the tanh GELU: gelu_new, gelu_pytorch_tanh)", *h.Activation)
	case h.ScaleAttnWeights != nil && !*h.ScaleAttnWeights:
		return Config{}, false, errors.New("scale_attn_weights false is not supported")
	case h.ScaleAttnByLayer != nil && *h.ScaleAttnByLayer:
		return Config{}, false, errors.New("scale_attn_by_inverse_layer_idx is not supported")
	case h.AddCrossAttention != nil && *h.AddCrossAttention:
		return Config{}, false, errors.New("add_cross_attention is not supported (decoder-only GPT-2)")
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, false, errors.New(strings.TrimPrefix(err.Error(), "model: "))
	}
	return cfg, h.TieWordEmbeddings != nil && !*h.TieWordEmbeddings, nil
}

// hfConfigKeys are the json names of hfConfig's fields.
var hfConfigKeys = func() []string {
	t := reflect.TypeFor[hfConfig]()
	keys := make([]string, t.NumField())
	for i := range keys {
		keys[i] = t.Field(i).Tag.Get("json")
	}
	return keys
}()

// checkConfigKeys refuses a config.json whose top-level object states a key
// twice, or spells one of the keys Chameleon reads in another case:
// encoding/json would take the last duplicate and match keys regardless of
// case, where transformers ignores "N_HEAD" and reads "n_head", so either
// could load sizes no tensor shape contradicts (n_head, the epsilon) other
// than the ones the checkpoint was made with.
func checkConfigKeys(data []byte) error {
	fields, err := tensorfile.ObjectFields(data) // refuses a key stated twice
	if err != nil {
		return fmt.Errorf("not a valid config.json: %w", err)
	}
	for _, f := range fields {
		for _, k := range hfConfigKeys {
			if f.Key != k && strings.EqualFold(f.Key, k) {
				return fmt.Errorf("key %q is not %q: keys are case-sensitive", f.Key, k)
			}
		}
	}
	return nil
}

// hfConfigOut is the config.json SaveHF writes, in this key order.
type hfConfigOut struct {
	ModelType         string      `json:"model_type"`
	Architectures     []string    `json:"architectures"`
	VocabSize         int         `json:"vocab_size"`
	NPositions        int         `json:"n_positions"`
	NCtx              int         `json:"n_ctx"`
	NEmbd             int         `json:"n_embd"`
	NHead             int         `json:"n_head"`
	NLayer            int         `json:"n_layer"`
	LNEps             json.Number `json:"layer_norm_epsilon"`
	Activation        string      `json:"activation_function"`
	TieWordEmbeddings bool        `json:"tie_word_embeddings"`
	TorchDType        string      `json:"torch_dtype"`
}
