package model

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

// PerplexityResult is the standard next-token perplexity of a token stream.
type PerplexityResult struct {
	Perplexity float64 `json:"perplexity"` // exp(NLL / Tokens)
	NLL        float64 `json:"nll"`        // summed negative log-likelihood, nats
	Tokens     int     `json:"tokens"`     // tokens scored: all but the first (and, when stride == context, each window's first)
	Windows    int     `json:"windows"`    // forward passes
	Context    int     `json:"context"`
	Stride     int     `json:"stride"`
}

// PerplexityOptions configures PerplexityWith.
type PerplexityOptions struct {
	Context int // window length in tokens, in [2, the model's context]
	Stride  int // window step, in [1, Context]
	Batch   int // windows per forward (<= 0: 1)
	// Progress, if set, is called after each batch with windows done/total.
	Progress func(done, total int)
	// Adapters, if set, supplies the adapter of each batch of windows: it
	// is called with the index of the batch's first window (in
	// PerplexityWindows order) and the batch's windows, and returns the
	// adapter (nil: the base model) and a function that releases it once
	// the batch is scored (nil: nothing to release). The adapter's
	// sequences are the batch's windows.
	Adapters func(first int, windows [][]int32) (Adapter, func(), error)
}

// window is one sliding window: tokens [begin, end), scoring targets
// scoreFrom..end-1.
type window struct{ begin, end, scoreFrom int }

// slidingWindows cuts n tokens into windows of ctx moved by stride; each
// scores only the targets the previous one did not.
func slidingWindows(n, ctx, stride int) []window {
	var wins []window
	prevEnd := 1 // the first token is never a target
	for begin := 0; prevEnd < n; begin += stride {
		end := min(begin+ctx, n)
		// A window's first token has no context inside it: when windows
		// do not overlap (stride == ctx) it goes unscored, as in HF.
		wins = append(wins, window{begin, end, max(prevEnd, begin+1)})
		prevEnd = end
		if end == n {
			break
		}
	}
	return wins
}

// PerplexityWindows returns the token windows PerplexityWith runs for
// these options, in order (slices of tokens): e.g. to cluster them all
// before scoring. It returns nil when the options are invalid.
func PerplexityWindows(tokens []int32, ctx, stride int) [][]int32 {
	if ctx <= 1 || stride <= 0 || stride > ctx || len(tokens) < 2 {
		return nil
	}
	wins := slidingWindows(len(tokens), ctx, stride)
	out := make([][]int32, len(wins))
	for i, w := range wins {
		out[i] = tokens[w.begin:w.end]
	}
	return out
}

// Perplexity is PerplexityWith without a head: the base model's
// perplexity of tokens with windows of ctx moved by stride, batch windows
// per forward.
func (m *Model) Perplexity(tokens []int32, ctx, stride, batch int, progress func(done, total int)) (PerplexityResult, error) {
	return m.PerplexityWith(tokens, PerplexityOptions{Context: ctx, Stride: stride, Batch: batch, Progress: progress})
}

// PerplexityWith scores tokens with a sliding window of o.Context tokens
// moved by o.Stride: each window scores only the targets the previous one
// did not, so every token after the first is scored once, with up to
// Context-Stride tokens of left context (the usual Hugging Face
// procedure). Windows run o.Batch at a time through one forward (with
// o.Adapters' adapter for that batch, if set), and the cross-entropy is computed
// on the backend, so only one float per position is read back.
func (m *Model) PerplexityWith(tokens []int32, o PerplexityOptions) (PerplexityResult, error) {
	ctx, stride := o.Context, o.Stride
	if ctx <= 1 || ctx > m.Cfg.NCtx {
		return PerplexityResult{}, fmt.Errorf("model: perplexity context %d must be in [2, %d]", ctx, m.Cfg.NCtx)
	}
	if stride <= 0 || stride > ctx {
		return PerplexityResult{}, fmt.Errorf("model: stride %d must be in [1, context %d]", stride, ctx)
	}
	if len(tokens) < 2 {
		return PerplexityResult{}, fmt.Errorf("model: perplexity needs at least 2 tokens, got %d", len(tokens))
	}
	batch := max(o.Batch, 1)
	wins := slidingWindows(len(tokens), ctx, stride)
	res := PerplexityResult{Context: ctx, Stride: stride, Windows: len(wins)}
	for w0 := 0; w0 < len(wins); w0 += batch {
		ws := wins[w0:min(w0+batch, len(wins))]
		seqs := make([][]int32, len(ws))
		from := make([]int, len(ws))
		for i, w := range ws {
			seqs[i] = tokens[w.begin:w.end]
			from[i] = w.scoreFrom - w.begin
		}
		var ad Adapter
		var release func()
		if o.Adapters != nil {
			var err error
			if ad, release, err = o.Adapters(w0, seqs); err != nil {
				return res, err
			}
		}
		scores, err := m.Score(seqs, from, ad)
		if release != nil {
			release()
		}
		if err != nil {
			return res, fmt.Errorf("model: perplexity windows %d..%d: %w", w0, w0+len(ws)-1, err)
		}
		for _, s := range scores {
			res.NLL += s.NLL
			res.Tokens += s.Tokens
		}
		if o.Progress != nil {
			o.Progress(w0+len(ws), len(wins))
		}
	}
	res.Perplexity = math.Exp(res.NLL / float64(res.Tokens))
	return res, nil
}

// SequenceScore is the next-token negative log-likelihood of one
// sequence's scored tokens.
type SequenceScore struct {
	NLL    float64 `json:"nll"`    // summed, nats
	Tokens int     `json:"tokens"` // tokens scored
	// Losses are the scored positions' losses (nats) in order: what a
	// caller needs to mix another distribution into the model's (a cache
	// of recent tokens) or to bootstrap over tokens.
	Losses []float32 `json:"-"`
}

// Perplexity is exp(NLL / Tokens) (NaN when nothing was scored).
func (s SequenceScore) Perplexity() float64 {
	if s.Tokens == 0 {
		return math.NaN()
	}
	return math.Exp(s.NLL / float64(s.Tokens))
}

// Score runs seqs (token ids, each of 2 to NCtx tokens) as one ragged
// batch through one forward and returns, per sequence, the NLL of its
// tokens from position from[i] on (from nil: 1, every token but the
// first), each predicted from all the tokens before it in its sequence.
// ad, if not nil, adapts the forward (its sequences are seqs).
// Cross-entropy runs on the backend; one float per position is read back.
func (m *Model) Score(seqs [][]int32, from []int, ad Adapter) ([]SequenceScore, error) {
	B := len(seqs)
	if B == 0 {
		return nil, fmt.Errorf("model: score: no sequences")
	}
	if from != nil && len(from) != B {
		return nil, fmt.Errorf("model: score: %d start positions for %d sequences", len(from), B)
	}
	tq := 0
	for i, s := range seqs {
		f := 1
		if from != nil {
			f = from[i]
		}
		if len(s) < 2 || len(s) > m.Cfg.NCtx {
			return nil, fmt.Errorf("model: score: sequence %d has %d tokens, want 2 to the context of %d", i, len(s), m.Cfg.NCtx)
		}
		if f < 1 || f > len(s) {
			return nil, fmt.Errorf("model: score: sequence %d of %d tokens scored from position %d", i, len(s), f)
		}
		tq = max(tq, len(s))
	}
	targets := make([]int32, B*tq)
	for i := range targets {
		targets[i] = -1
	}
	for i, s := range seqs {
		f := 1
		if from != nil {
			f = from[i]
		}
		for p := f; p < len(s); p++ {
			targets[i*tq+p-1] = s[p] // position p-1 predicts token p
		}
	}
	cache, err := m.NewCache(B, tq)
	if err != nil {
		return nil, err
	}
	logits, err := m.ForwardAdapted(cache, seqs, false, ad)
	m.FreeCache(cache)
	if err != nil {
		return nil, err
	}
	be := m.B
	defer be.Free(logits)
	tg, err := be.Alloc(gpu.I32, B*tq)
	if err != nil {
		return nil, err
	}
	defer be.Free(tg)
	loss, err := be.Alloc(gpu.F32, B*tq)
	if err != nil {
		return nil, err
	}
	defer be.Free(loss)
	if err := be.Write(tg, targets); err != nil {
		return nil, err
	}
	be.CrossEntropy(loss, logits, tg)
	l, err := be.ReadF32(loss)
	if err != nil {
		return nil, err
	}
	out := make([]SequenceScore, B)
	for j, t := range targets {
		if t < 0 {
			continue
		}
		if math.IsNaN(float64(l[j])) || math.IsInf(float64(l[j]), 0) {
			return nil, fmt.Errorf("model: non-finite loss in sequence %d at position %d", j/tq, j%tq)
		}
		out[j/tq].NLL += float64(l[j])
		out[j/tq].Tokens++
		out[j/tq].Losses = append(out[j/tq].Losses, l[j])
	}
	return out, nil
}

// ScoreChunked is Score over as many forwards as it takes to keep each
// one's logits under 64 MiB (ScoreChunks). adapterOf(first) gives the
// adapter of the batch starting at sequence first (its sequences are that
// batch's; nil: the base model).
func (m *Model) ScoreChunked(seqs [][]int32, adapterOf func(first int) Adapter) ([]SequenceScore, error) {
	var out []SequenceScore
	for _, c := range m.ScoreChunks(seqs) {
		sc, err := m.Score(seqs[c[0]:c[1]], nil, adapterOf(c[0]))
		if err != nil {
			return nil, err
		}
		out = append(out, sc...)
	}
	return out, nil
}

// ScoreChunks splits seqs, in order, into the batches [first, end) that
// ScoreChunked scores one forward each: consecutive sequences are batched
// while longest x count rows of logits fit in 64 MiB (one sequence a
// batch at least).
func (m *Model) ScoreChunks(seqs [][]int32) [][2]int {
	maxRows := max(1, (64<<20)/(4*m.Cfg.VocabSize))
	var out [][2]int
	for first := 0; first < len(seqs); {
		end, longest := first, 0
		for end < len(seqs) {
			l := max(longest, len(seqs[end]))
			if end > first && l*(end-first+1) > maxRows {
				break
			}
			longest = l
			end++
		}
		out = append(out, [2]int{first, end})
		first = end
	}
	return out
}
