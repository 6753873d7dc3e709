package model

import "github.com/chameleon-llm/chameleon/gpu"

// Sites: the linear layers of a decoder block an adapter may update, and
// the output projection. The names are the layer's role, not a checkpoint
// name, so that another model family can map its own layers onto them
// (and add its own, e.g. a Llama's gate and up projections).
const (
	SiteQKV  = "attn.qkv"  // (C -> 3C) the fused query, key and value projection
	SiteProj = "attn.proj" // (C -> C) the attention's output projection
	SiteFC   = "mlp.fc"    // (C -> 4C)
	SiteFC2  = "mlp.fc2"   // (4C -> C)
	SiteHead = "head"      // the tied output projection (C -> V), Layer -1
)

// DecoderSites are the block sites in the order a forward reaches them.
var DecoderSites = []string{SiteQKV, SiteProj, SiteFC, SiteFC2}

// Site names one linear layer of the decoder.
type Site struct {
	Layer int    // block index; -1 for the output projection
	Name  string // SiteQKV, SiteProj, SiteFC, SiteFC2 or SiteHead
}

// SiteShape is (in, out) of site name for width c and vocabulary v; ok is
// false for a name this family does not have.
func (c Config) SiteShape(name string) (in, out int, ok bool) {
	switch name {
	case SiteQKV:
		return c.NEmbd, 3 * c.NEmbd, true
	case SiteProj:
		return c.NEmbd, c.NEmbd, true
	case SiteFC:
		return c.NEmbd, 4 * c.NEmbd, true
	case SiteFC2:
		return 4 * c.NEmbd, c.NEmbd, true
	case SiteHead:
		return c.NEmbd, c.VocabSize, true
	}
	return 0, 0, false
}

// Adapter changes a model's forward passes: the hook through which package
// adapt updates linear layers row by row (each row its own sequence's
// update, so one batch serves many adaptations).
type Adapter interface {
	// Begin prepares one forward, before the forward records any kernel
	// (a write to the device after a kernel waits for it, a round trip in
	// the middle of a decode step). rows[r] is the cache slot (sequence)
	// of activation row r, -1 for padding; head[r] is that of logits row
	// r: rows itself, or one row per sequence for ForwardLast (-1 for a
	// sequence that added no tokens).
	Begin(rows, head []int32) (Pass, error)
}

// Pass is one forward's adaptation, from Adapter.Begin.
type Pass interface {
	// Linear adds site s's update to its output y (rows, out), given the
	// layer's input x (rows, in); the forward calls it after every block
	// site's matmul (and the bias), before anything reads y, except where
	// the pass's MatMulPass.MatMul ran the site.
	Linear(s Site, y, x gpu.Tensor) error
	// Updates reports whether Linear changes site s's output in this
	// pass. Where it does not, the forward may fuse what follows the
	// site's matmul into it (attn.qkv's KV-cache store; mlp.fc's GELU:
	// gelu(xW + b) in one kernel, so y itself is never written), and then
	// does not call Linear for s.
	Updates(s Site) bool
	// Logits computes dst (head rows, V) from the final layer norm's
	// output h (head rows, C) in place of the tied projection; done false
	// leaves the logits to the model.
	Logits(dst, h gpu.Tensor) (done bool, err error)
	// End releases what Begin made; the forward calls it once recorded,
	// on every path.
	End()
}

// ResidualPass is a Pass that sees the residual stream after the last
// block, (B, T, C) over every row of the forward (rows past a sequence's
// new tokens are padding), before the final layer norm and, in a last-only
// forward, before the head's rows are gathered: what a plan made from a
// prompt's own prefill reads (adapt.Runtime.Prefill; Model.FinalNorm of x
// gives the rows the head reads). It must not write x.
type ResidualPass interface {
	Residual(x gpu.Tensor) error
}

// MatMulPass is a Pass that may run a block site's matmul itself, with
// its update (e.g. the update's expand as the matmul kernel's epilogue, so
// that y is written once).
type MatMulPass interface {
	// MatMul computes site s's output y = x·Wᵀ + bias with the pass's
	// update, in place of the forward's MatMul and Linear; done false
	// leaves both to the forward.
	MatMul(s Site, y, x, w, bias gpu.Tensor) (done bool, err error)
}

// TokenObserver is an Adapter that is shown each forward's new tokens
// (tokens[b] for the batch's sequence b, in order) before Begin: what a
// cache of the tokens a sequence has run through the model needs.
type TokenObserver interface {
	Observe(tokens [][]int32) error
}

// HeadFunc is an Adapter that computes the logits only: f gets the final
// layer norm's output h, the logits dst to write and each logits row's
// sequence (head of Adapter.Begin). Reading h here is how a caller gets
// the hidden states of a forward.
type HeadFunc func(dst, h gpu.Tensor, seq []int32) error

// Begin implements Adapter.
func (f HeadFunc) Begin(_, head []int32) (Pass, error) { return headPass{f, head}, nil }

type headPass struct {
	f    HeadFunc
	head []int32
}

func (headPass) Linear(Site, gpu.Tensor, gpu.Tensor) error { return nil }
func (headPass) Updates(Site) bool                         { return false }
func (p headPass) Logits(dst, h gpu.Tensor) (bool, error)  { return true, p.f(dst, h, p.head) }
func (headPass) End()                                      {}
