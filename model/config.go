package model

import (
	"fmt"
	"math"
)

// Config is a GPT-2 architecture: the fields of a Hugging Face GPT-2
// config.json that the forward needs.
type Config struct {
	VocabSize int     `json:"vocab_size"`         // V
	NCtx      int     `json:"n_positions"`        // P, the context length
	NEmbd     int     `json:"n_embd"`             // C
	NHead     int     `json:"n_head"`             // H; C % H == 0
	NLayer    int     `json:"n_layer"`            // L
	LNEps     float32 `json:"layer_norm_epsilon"` // layernorm epsilon
}

// Configs are the named architectures `chameleon init --config` knows.
var Configs = map[string]Config{
	"gpt2":        {VocabSize: 50257, NCtx: 1024, NEmbd: 768, NHead: 12, NLayer: 12, LNEps: 1e-5},
	"gpt2-medium": {VocabSize: 50257, NCtx: 1024, NEmbd: 1024, NHead: 16, NLayer: 24, LNEps: 1e-5},
	"gpt2-large":  {VocabSize: 50257, NCtx: 1024, NEmbd: 1280, NHead: 20, NLayer: 36, LNEps: 1e-5},
	"gpt2-xl":     {VocabSize: 50257, NCtx: 1024, NEmbd: 1600, NHead: 25, NLayer: 48, LNEps: 1e-5},
	"tiny":        {VocabSize: 50257, NCtx: 256, NEmbd: 128, NHead: 4, NLayer: 2, LNEps: 1e-5},
}

// Validate reports the first inconsistency of c.
func (c Config) Validate() error {
	for _, f := range []struct {
		key string
		n   int
	}{{"vocab_size", c.VocabSize}, {"n_positions", c.NCtx}, {"n_embd", c.NEmbd}, {"n_head", c.NHead}, {"n_layer", c.NLayer}} {
		if f.n <= 0 {
			return fmt.Errorf("model: config: %s is %d; every size must be positive (config %+v)", f.key, f.n, c)
		}
	}
	switch {
	case c.NEmbd%c.NHead != 0:
		return fmt.Errorf("model: config: n_embd %d is not a multiple of n_head %d", c.NEmbd, c.NHead)
	case !(c.LNEps > 0) || math.IsInf(float64(c.LNEps), 0):
		return fmt.Errorf("model: config: layer_norm_epsilon %g must be positive and finite", c.LNEps)
	}
	return nil
}

// Params is the number of parameters, every tensor of the weight table
// (the output projection is tied to wte).
func (c Config) Params() int {
	global, perLayer := gpt2Table.count(c.sizes(), func(Role) bool { return true })
	return global + c.NLayer*perLayer
}
