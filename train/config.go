package train

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/chameleon-llm/chameleon/model"
)

// Config is the exact configuration of a training run. It is saved as JSON
// beside every checkpoint's weights; resuming requires the same values for
// every field except those that only schedule side work (EvalEvery,
// SaveEvery, EvalTokens), so that the resumed run computes exactly what
// the uninterrupted one would have.
type Config struct {
	Model       model.Config `json:"model"`
	Steps       int          `json:"steps"`        // optimisation steps in all
	Batch       int          `json:"batch"`        // B sequences per step
	Seq         int          `json:"seq"`          // T tokens per sequence
	LR          float64      `json:"lr"`           // peak learning rate
	MinLR       float64      `json:"min_lr"`       // the cosine decay's floor
	Warmup      int          `json:"warmup"`       // linear warm-up steps
	WeightDecay float64      `json:"weight_decay"` // on 2-D parameters only
	Beta1       float64      `json:"beta1"`
	Beta2       float64      `json:"beta2"`
	Eps         float64      `json:"eps"`
	ClipNorm    float64      `json:"clip_norm"` // global gradient norm; <= 0 disables
	Seed        uint64       `json:"seed"`      // initialisation and batch sampling
	EvalEvery   int          `json:"eval_every"`
	SaveEvery   int          `json:"save_every"`
	EvalTokens  int          `json:"eval_tokens"` // validation tokens per domain per evaluation
}

// DefaultConfig is a small model's configuration with nanoGPT-like
// optimiser settings.
func DefaultConfig(m model.Config) Config {
	return Config{
		Model: m, Steps: 1000, Batch: 8, Seq: 64, LR: 6e-4, MinLR: 6e-5, Warmup: 100,
		WeightDecay: 0.1, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1.0, Seed: 1,
		EvalEvery: 100, SaveEvery: 500, EvalTokens: 16384,
	}
}

// Validate reports the first inconsistency of c.
func (c Config) Validate() error {
	if err := c.Model.Validate(); err != nil {
		return err
	}
	switch {
	case c.Steps <= 0 || c.Batch <= 0 || c.Seq <= 0:
		return fmt.Errorf("train: steps %d, batch %d and seq %d must be positive", c.Steps, c.Batch, c.Seq)
	case c.Seq > c.Model.NCtx:
		return fmt.Errorf("train: seq %d exceeds the model's context of %d", c.Seq, c.Model.NCtx)
	case c.Batch*c.Seq > maxEmbedRows:
		return fmt.Errorf("train: batch %d x seq %d = %d positions per step exceeds %d", c.Batch, c.Seq, c.Batch*c.Seq, maxEmbedRows)
	case !(c.LR > 0) || c.MinLR < 0 || c.MinLR > c.LR:
		return fmt.Errorf("train: want 0 <= min_lr (%g) <= lr (%g) and lr > 0", c.MinLR, c.LR)
	case c.Warmup < 0 || c.Warmup > c.Steps:
		return fmt.Errorf("train: warmup %d must be between 0 and steps %d", c.Warmup, c.Steps)
	case c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1 || !(c.Eps > 0):
		return fmt.Errorf("train: want 0 <= beta1, beta2 < 1 and eps > 0 (got %g, %g, %g)", c.Beta1, c.Beta2, c.Eps)
	case c.WeightDecay < 0:
		return fmt.Errorf("train: weight decay %g is negative", c.WeightDecay)
	}
	return nil
}

// Schedule is the learning-rate schedule c describes.
func (c Config) Schedule() Schedule {
	return Schedule{LR: c.LR, MinLR: c.MinLR, Warmup: c.Warmup, Steps: c.Steps}
}

// sideFields may differ between a checkpoint and a resumed run.
var sideFields = map[string]bool{"eval_every": true, "save_every": true, "eval_tokens": true}

// Diff lists the fields (JSON names, "model.n_embd" for nested ones) where
// c and o differ, as "name: a -> b", ignoring the side fields.
func (c Config) Diff(o Config) []string {
	a, b := flatJSON(c), flatJSON(o)
	var out []string
	for k, va := range a {
		if sideFields[k] {
			continue
		}
		if vb := b[k]; va != vb {
			out = append(out, fmt.Sprintf("%s: %s -> %s", k, va, vb))
		}
	}
	sort.Strings(out)
	return out
}

// flatJSON maps each leaf field of v's JSON form to its JSON text.
func flatJSON(v any) map[string]string {
	raw, _ := json.Marshal(v)
	var tree map[string]any
	_ = json.Unmarshal(raw, &tree)
	out := map[string]string{}
	var walk func(prefix string, x any)
	walk = func(prefix string, x any) {
		if m, ok := x.(map[string]any); ok {
			for k, y := range m {
				walk(prefix+k+".", y)
			}
			return
		}
		b, _ := json.Marshal(x)
		out[strings.TrimSuffix(prefix, ".")] = string(b)
	}
	walk("", tree)
	return out
}
