package adaptrun

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Set is one split's windows after the frozen base model has run over
// them: what every adapter trains or is scored on.
type Set struct {
	Name    string
	Windows []Window
	Domains []string    // the set's domains, report order
	Dom     []int       // (N) each window's index into Domains: for evaluation and the oracle only
	Hidden  [][]float32 // per window (T, C): the base model's final hidden states (ln_f output)
	Targets [][]int32   // per window (T): next tokens, -1 inside the prompt (not scored)
	Emb     []float32   // (N, C) mean token embedding of the prompt, L2-normalised
	Hid     []float32   // (N, C) mean final hidden state over the prompt, L2-normalised
	C       int
	Prompt  int // P: the prompt's tokens (features come from them)
}

// Feature returns the (N, dim) features of kind (adapt.FeatureEmbed,
// FeatureHidden or FeatureBoth).
func (s *Set) Feature(kind string) []float32 {
	switch kind {
	case "", adapt.FeatureEmbed:
		return s.Emb
	case adapt.FeatureHidden:
		return s.Hid
	case adapt.FeatureBoth:
		out := make([]float32, 0, 2*len(s.Emb))
		for i := range s.Windows {
			out = append(out, s.Emb[i*s.C:(i+1)*s.C]...)
			out = append(out, s.Hid[i*s.C:(i+1)*s.C]...)
		}
		return out
	}
	panic(fmt.Sprintf("adaptrun: unknown feature kind %q", kind))
}

// Scored is the number of scored targets of window i.
func (s *Set) Scored(i int) int {
	n := 0
	for _, t := range s.Targets[i] {
		if t >= 0 {
			n++
		}
	}
	return n
}

// Prepare runs the frozen base model m over one split of w (batch windows
// at a time) and computes the windows' features. progress, if set, gets
// windows done.
func Prepare(m *model.Model, w *Windows, split string, batch int, progress func(done int)) (*Set, error) {
	if w.Vocab != m.Cfg.VocabSize {
		return nil, fmt.Errorf("adaptrun: windows made with a vocabulary of %d tokens, the model has %d", w.Vocab, m.Cfg.VocabSize)
	}
	if w.T > m.Cfg.NCtx {
		return nil, fmt.Errorf("adaptrun: windows of %d tokens exceed the model's context of %d", w.T, m.Cfg.NCtx)
	}
	ws := w.Splits[split]
	if len(ws) == 0 {
		return nil, fmt.Errorf("adaptrun: no %s windows", split)
	}
	c := m.Cfg.NEmbd
	s := &Set{Name: split, Windows: ws, C: c, Prompt: w.Prompt}
	idx := map[string]int{}
	for _, d := range w.Order {
		for _, x := range ws {
			if x.Domain == d {
				idx[d] = len(s.Domains)
				s.Domains = append(s.Domains, d)
				break
			}
		}
	}
	toks := make([][]int32, len(ws))
	prompts := make([][]int32, len(ws))
	for i, x := range ws {
		tg := make([]int32, w.T)
		for j := range tg {
			tg[j] = x.Tokens[j+1]
			if j < w.Prompt-1 {
				tg[j] = -1
			}
		}
		toks[i] = x.Tokens[:w.T]
		s.Targets = append(s.Targets, tg)
		s.Dom = append(s.Dom, idx[x.Domain])
		prompts[i] = x.Tokens[:w.Prompt]
	}
	var err error
	if s.Hidden, err = hiddenStates(m, toks, batch, progress); err != nil {
		return nil, err
	}
	ops, err := cluster.OpsFor(m.B)
	if err != nil {
		return nil, err
	}
	ft, err := cluster.Features(ops, m.W.Wte, prompts)
	if err != nil {
		return nil, err
	}
	defer ops.Free(ft)
	if s.Emb, err = ops.ReadF32(ft); err != nil {
		return nil, err
	}
	s.Hid = make([]float32, len(ws)*c)
	for i := range ws {
		row := s.Hid[i*c : (i+1)*c]
		for j := 0; j < w.Prompt; j++ {
			for k, v := range s.Hidden[i][j*c : (j+1)*c] {
				row[k] += v
			}
		}
		normalise(row)
	}
	return s, nil
}

// normalise scales x to unit L2 norm in place (a zero vector stays zero).
func normalise(x []float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	if ss == 0 || math.IsNaN(ss) || math.IsInf(ss, 0) {
		return
	}
	inv := float32(1 / math.Sqrt(ss))
	for i := range x {
		x[i] *= inv
	}
}

// hiddenStates runs the frozen base model over every sequence once (batch
// at a time) and returns each one's final hidden states (after ln_f),
// len*C values, on the host: a head-only adapter changes nothing else of
// the decoder, so computing them once saves every later step the
// decoder's forward. progress, if set, gets sequences done.
func hiddenStates(m *model.Model, seqs [][]int32, batch int, progress func(done int)) ([][]float32, error) {
	out := make([][]float32, len(seqs))
	for b0 := 0; b0 < len(seqs); b0 += batch {
		n := min(batch, len(seqs)-b0)
		toks := seqs[b0 : b0+n]
		tmax := 0
		for _, t := range toks {
			tmax = max(tmax, len(t))
		}
		cache, err := m.NewCache(n, tmax)
		if err != nil {
			return nil, err
		}
		var hs []float32
		head := model.HeadFunc(func(dst, h gpu.Tensor, _ []int32) error {
			var err error
			hs, err = m.B.ReadF32(h)
			return err
		})
		logits, err := m.ForwardAdapted(cache, toks, false, head)
		m.FreeCache(cache)
		if err != nil {
			return nil, err
		}
		m.B.Free(logits)
		c := m.Cfg.NEmbd
		for i := 0; i < n; i++ {
			out[b0+i] = hs[i*tmax*c : (i*tmax+len(toks[i]))*c]
		}
		if progress != nil {
			progress(b0 + n)
		}
	}
	return out, nil
}
