package train

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Batch is one training or evaluation batch of B ragged sequences.
// Targets[b][i] is the token that should follow Tokens[b][:i+1], or -1 where
// the position is not scored; len(Targets[b]) == len(Tokens[b]), between 1
// and the model's context. Shorter sequences are padded to the longest: their
// padding positions are masked out of the loss and carry zero gradient.
type Batch struct {
	Tokens  [][]int32
	Targets [][]int32
}

// Model is a GPT-2 being trained on a TrainBackend: F32 parameters, one F32
// gradient tensor per parameter, and the activations of the last forward.
type Model struct {
	Cfg model.Config
	B   gpu.TrainBackend
	W   *model.Weights // parameters, F32
	G   *model.Weights // gradients, same layout; Backward accumulates into them

	names         []string     // checkpoint names, TensorSpec order
	params, grads []gpu.Tensor // W.Tensors() and G.Tensors(), TensorSpec order
	a             *acts        // activations of the current (B, T); nil before Forward
	nReal         int          // unmasked targets of the last forward
	// Delta, if set, updates some linear layers in Forward and Backward
	// (an adapter on a frozen base: its gradients are the Delta's own).
	Delta Delta
}

// Sites: the decoder's linear layers an adapter may update (model's).
const (
	SiteQKV  = model.SiteQKV
	SiteProj = model.SiteProj
	SiteFC   = model.SiteFC
	SiteFC2  = model.SiteFC2
	SiteHead = model.SiteHead
)

// Site names one linear layer of the decoder (model.Site).
type Site = model.Site

// Delta is an update of some of the decoder's linear layers y = x·Wᵀ + b
// that Model.Forward and Model.Backward apply. Forward adds the update's
// output into y after the layer's matmul; Backward runs after the layer's
// own backward wrote dx: it adds the update's input gradient into dx (dx
// is nil for the first layer's, not needed) and accumulates the update's
// parameter gradients. Errors are external (allocation).
type Delta interface {
	Has(s Site) bool
	Forward(s Site, y, x gpu.Tensor) error
	Backward(s Site, dx, dy, x gpu.Tensor) error
}

// acts holds everything one (B, T) shape needs: the inputs, the saved
// activations of the forward and the backward's scratch buffers.
type acts struct {
	b, t int
	// inputs, I32: tok(M) the tokens (0 at padding), tokB(M) the same with
	// -1 at padding (EmbedBackward skips them), pos(M) (0 at padding),
	// posB(M) the same with -1 at padding, tgt(M), qlen(B)
	tok, tokB, pos, posB, tgt, qlen gpu.Tensor
	res                             []gpu.Tensor // L+1 residual streams (B,T,C): res[0] the embedding, res[l+1] block l's output
	x2                              []gpu.Tensor // per layer, residual after attention (B,T,C)
	h1, h2                          []gpu.Tensor // per layer, ln_1 and ln_2 outputs (B,T,C)
	qkv                             []gpu.Tensor // per layer (B,T,3C)
	att                             []gpu.Tensor // per layer, attention output (B,T,C)
	lse                             []gpu.Tensor // per layer, attention logsumexp (B,H,T)
	fc, gel                         []gpu.Tensor // per layer, MLP pre- and post-GELU (B,T,4C)
	hf                              gpu.Tensor   // ln_f output (B,T,C)
	logits                          gpu.Tensor   // (B,T,V)
	losses                          gpu.Tensor   // per-position cross-entropy (M), 0 where masked
	proj                            gpu.Tensor   // scratch (B,T,C)
	// backward scratch
	dlogits             gpu.Tensor // (B,T,V)
	dres, dx2, dh, datt gpu.Tensor // (B,T,C)
	dqkv                gpu.Tensor // (B,T,3C)
	dfc, dgel           gpu.Tensor // (B,T,4C)
	all                 []gpu.Tensor
}

// New puts host (TensorSpec(cfg) with data, e.g. model.RandomInit or a
// loaded checkpoint) on b as F32 parameters and allocates their gradients.
func New(b gpu.TrainBackend, cfg model.Config, host []model.HostTensor) (*Model, error) {
	w, err := model.Upload(b, cfg, host, gpu.F32)
	if err != nil {
		return nil, err
	}
	spec := model.TensorSpec(cfg)
	for i := range spec {
		spec[i].Data = make([]float32, gpu.Numel(spec[i].Shape))
	}
	g, err := model.Upload(b, cfg, spec, gpu.F32)
	if err != nil {
		w.Free(b)
		return nil, fmt.Errorf("train: gradients: %w", err)
	}
	m := &Model{Cfg: cfg, B: b, W: w, G: g, params: w.Tensors(), grads: g.Tensors()}
	for _, s := range spec {
		m.names = append(m.names, s.Name)
	}
	return m, nil
}

func freeAll(b gpu.Backend, ts []gpu.Tensor) {
	for _, t := range ts {
		if t != nil {
			b.Free(t)
		}
	}
}

// Names are the parameters' checkpoint names, in the order of Params and
// Grads: the weight table's checkpoint order (model.TensorSpec). The
// optimizer's saved moments are keyed by these names.
func (m *Model) Names() []string { return m.names }

// Params lists the parameter tensors in TensorSpec order.
func (m *Model) Params() []gpu.Tensor { return m.params }

// Grads lists the gradient tensors, aligned with Params.
func (m *Model) Grads() []gpu.Tensor { return m.grads }

// Host reads the parameters back as TensorSpec(cfg) with data.
func (m *Model) Host() ([]model.HostTensor, error) {
	return readHost(m.B, m.Cfg, m.params)
}

// HostGrads reads the gradients back, named like the parameters.
func (m *Model) HostGrads() ([]model.HostTensor, error) {
	return readHost(m.B, m.Cfg, m.grads)
}

func readHost(b gpu.Backend, cfg model.Config, ts []gpu.Tensor) ([]model.HostTensor, error) {
	spec := model.TensorSpec(cfg)
	for i := range spec {
		d, err := b.ReadF32(ts[i])
		if err != nil {
			return nil, fmt.Errorf("train: reading %s: %w", spec[i].Name, err)
		}
		spec[i].Data = d
	}
	return spec, nil
}

// Free releases every tensor of the model.
func (m *Model) Free() {
	m.freeActs()
	m.W.Free(m.B)
	m.G.Free(m.B)
	m.params, m.grads = nil, nil
}

func (m *Model) freeActs() {
	if m.a != nil {
		freeAll(m.B, m.a.all)
		m.a = nil
	}
}

// ZeroGrad clears every gradient (the start of a step).
func (m *Model) ZeroGrad() {
	for _, g := range m.grads {
		m.B.Zero(g)
	}
}

// ensureActs allocates the activations for (nb, nt), reusing the current
// ones when the shape is unchanged.
func (m *Model) ensureActs(nb, nt int) error {
	if m.a != nil && m.a.b == nb && m.a.t == nt {
		return nil
	}
	m.freeActs()
	cfg := m.Cfg
	C, V, H, L, M := cfg.NEmbd, cfg.VocabSize, cfg.NHead, cfg.NLayer, nb*nt
	a := &acts{b: nb, t: nt}
	var err error
	alloc := func(dt gpu.DType, shape ...int) gpu.Tensor {
		if err != nil {
			return nil
		}
		var t gpu.Tensor
		if t, err = m.B.Alloc(dt, shape...); err != nil {
			err = fmt.Errorf("train: activations for batch %d x %d: %w", nb, nt, err)
			return nil
		}
		a.all = append(a.all, t)
		return t
	}
	a.tok, a.tokB, a.pos, a.posB = alloc(gpu.I32, M), alloc(gpu.I32, M), alloc(gpu.I32, M), alloc(gpu.I32, M)
	a.tgt, a.qlen = alloc(gpu.I32, M), alloc(gpu.I32, nb)
	for l := 0; l <= L; l++ {
		a.res = append(a.res, alloc(gpu.F32, nb, nt, C))
	}
	for l := 0; l < L; l++ {
		a.x2 = append(a.x2, alloc(gpu.F32, nb, nt, C))
		a.h1 = append(a.h1, alloc(gpu.F32, nb, nt, C))
		a.h2 = append(a.h2, alloc(gpu.F32, nb, nt, C))
		a.qkv = append(a.qkv, alloc(gpu.F32, nb, nt, 3*C))
		a.att = append(a.att, alloc(gpu.F32, nb, nt, C))
		a.lse = append(a.lse, alloc(gpu.F32, nb, H, nt))
		a.fc = append(a.fc, alloc(gpu.F32, nb, nt, 4*C))
		a.gel = append(a.gel, alloc(gpu.F32, nb, nt, 4*C))
	}
	a.hf, a.proj = alloc(gpu.F32, nb, nt, C), alloc(gpu.F32, nb, nt, C)
	a.logits, a.losses = alloc(gpu.F32, nb, nt, V), alloc(gpu.F32, M)
	a.dlogits = alloc(gpu.F32, nb, nt, V)
	a.dres, a.dx2, a.dh, a.datt = alloc(gpu.F32, nb, nt, C), alloc(gpu.F32, nb, nt, C), alloc(gpu.F32, nb, nt, C), alloc(gpu.F32, nb, nt, C)
	a.dqkv = alloc(gpu.F32, nb, nt, 3*C)
	a.dfc, a.dgel = alloc(gpu.F32, nb, nt, 4*C), alloc(gpu.F32, nb, nt, 4*C)
	if err != nil {
		freeAll(m.B, a.all)
		return err
	}
	m.a = a
	return nil
}

// maxEmbedRows is the most rows (B*T) one EmbedBackward call takes on WebGPU.
const maxEmbedRows = 60000

// Forward records the training forward of batch: the embedding, every block
// (LayerNorm, QKV, causal attention with its logsumexp saved, projection,
// residual, LayerNorm, MLP, residual), the final LayerNorm, the tied output
// projection and the per-position cross-entropy. Nothing is read back: Loss
// does that. It returns an error for a malformed batch or a failed
// allocation.
//
// (Over 80 lines: GPT-2's forward as one sequence of recorded kernels, each
// keeping the activations the backward reads.)
func (m *Model) Forward(batch Batch) error {
	cfg := m.Cfg
	nb := len(batch.Tokens)
	if nb == 0 || len(batch.Targets) != nb {
		return fmt.Errorf("train: batch of %d token and %d target sequences", nb, len(batch.Targets))
	}
	nt := 0
	for b, ts := range batch.Tokens {
		if len(ts) == 0 || len(ts) > cfg.NCtx || len(batch.Targets[b]) != len(ts) {
			return fmt.Errorf("train: sequence %d has %d tokens and %d targets; want equal counts between 1 and the context of %d",
				b, len(ts), len(batch.Targets[b]), cfg.NCtx)
		}
		nt = max(nt, len(ts))
	}
	M := nb * nt
	if M > maxEmbedRows {
		return fmt.Errorf("train: batch of %d x %d = %d positions exceeds the %d a step takes", nb, nt, M, maxEmbedRows)
	}
	tok, tokB, pos, posB, tgt := make([]int32, M), make([]int32, M), make([]int32, M), make([]int32, M), make([]int32, M)
	qlen := make([]int32, nb)
	nReal := 0
	for b, ts := range batch.Tokens {
		qlen[b] = int32(len(ts))
		for i := 0; i < nt; i++ {
			r := b*nt + i
			if i >= len(ts) {
				tokB[r], posB[r], tgt[r] = -1, -1, -1
				continue
			}
			t, y := ts[i], batch.Targets[b][i]
			if t < 0 || int(t) >= cfg.VocabSize || int(y) >= cfg.VocabSize {
				return fmt.Errorf("train: sequence %d position %d: token %d or target %d outside the vocabulary of %d", b, i, t, y, cfg.VocabSize)
			}
			tok[r], tokB[r], pos[r], posB[r] = t, t, int32(i), int32(i)
			if y >= 0 {
				tgt[r] = y
				nReal++
			} else {
				tgt[r] = -1
			}
		}
	}
	if nReal == 0 {
		return fmt.Errorf("train: the batch has no scored positions (every target is -1)")
	}
	if err := m.ensureActs(nb, nt); err != nil {
		return err
	}
	a, be, W := m.a, m.B, m.W
	for _, up := range []struct {
		t gpu.Tensor
		v []int32
	}{{a.tok, tok}, {a.tokB, tokB}, {a.pos, pos}, {a.posB, posB}, {a.tgt, tgt}, {a.qlen, qlen}} {
		if err := be.Write(up.t, up.v); err != nil {
			return fmt.Errorf("train: uploading the batch: %w", err)
		}
	}
	m.nReal = nReal
	var derr error
	delta := func(l int, name string, y, x gpu.Tensor) {
		if m.Delta != nil && derr == nil && m.Delta.Has(Site{Layer: l, Name: name}) {
			derr = m.Delta.Forward(Site{Layer: l, Name: name}, y, x)
		}
	}
	be.Embed(a.res[0], W.Wte, W.Wpe, a.tok, a.pos)
	for l, L := range W.Layers {
		be.LayerNorm(a.h1[l], a.res[l], L.Ln1G, L.Ln1B, cfg.LNEps)
		be.MatMul(a.qkv[l], a.h1[l], L.AttnW, L.AttnB)
		delta(l, SiteQKV, a.qkv[l], a.h1[l])
		be.AttentionTrain(a.att[l], a.lse[l], a.qkv[l], a.qlen, cfg.NHead)
		be.MatMul(a.proj, a.att[l], L.ProjW, L.ProjB)
		delta(l, SiteProj, a.proj, a.att[l])
		be.Add(a.x2[l], a.res[l], a.proj)
		be.LayerNorm(a.h2[l], a.x2[l], L.Ln2G, L.Ln2B, cfg.LNEps)
		be.MatMul(a.fc[l], a.h2[l], L.FcW, L.FcB)
		delta(l, SiteFC, a.fc[l], a.h2[l])
		be.GELU(a.gel[l], a.fc[l])
		be.MatMul(a.proj, a.gel[l], L.Fc2W, L.Fc2B)
		delta(l, SiteFC2, a.proj, a.gel[l])
		be.Add(a.res[l+1], a.x2[l], a.proj)
	}
	be.LayerNorm(a.hf, a.res[cfg.NLayer], W.LnFG, W.LnFB, cfg.LNEps)
	be.MatMul(a.logits, a.hf, W.Wte, nil)
	delta(-1, SiteHead, a.logits, a.hf)
	be.CrossEntropy(a.losses, a.logits, a.tgt)
	return derr
}

// RowLosses flushes the recorded work and returns the last Forward's
// per-position cross-entropy (B*T, 0 where masked).
func (m *Model) RowLosses() ([]float32, error) {
	if m.a == nil {
		return nil, fmt.Errorf("train: RowLosses before Forward")
	}
	return m.B.ReadF32(m.a.losses)
}

// Loss flushes the recorded work and returns the mean cross-entropy of the
// last Forward over its scored positions (summed in float64) and their count.
func (m *Model) Loss() (float64, int, error) {
	if m.a == nil {
		return 0, 0, fmt.Errorf("train: Loss before Forward")
	}
	ls, err := m.B.ReadF32(m.a.losses)
	if err != nil {
		return 0, 0, err
	}
	var sum float64
	for _, l := range ls {
		sum += float64(l)
	}
	return sum / float64(m.nReal), m.nReal, nil
}

// Logits is the (B, T, V) logits tensor of the last Forward (owned by the
// model; valid until the next Forward with another shape).
func (m *Model) Logits() gpu.Tensor {
	if m.a == nil {
		return nil
	}
	return m.a.logits
}

// Backward records the backward of the last Forward's mean loss,
// accumulating (+=) into every gradient tensor. Residual connections add
// their two gradient streams with Accumulate; wte receives both the output
// projection's and the embedding's gradient.
func (m *Model) Backward() error {
	a, be, W, G, cfg := m.a, m.B, m.W, m.G, m.Cfg
	if a == nil {
		panic("train: Backward before Forward")
	}
	var derr error
	delta := func(l int, name string, dx, dy, x gpu.Tensor) {
		if m.Delta != nil && derr == nil && m.Delta.Has(Site{Layer: l, Name: name}) {
			derr = m.Delta.Backward(Site{Layer: l, Name: name}, dx, dy, x)
		}
	}
	be.CrossEntropyBackward(a.dlogits, a.logits, a.tgt, float32(1/float64(m.nReal)))
	be.MatMulBackward(a.dh, G.Wte, nil, a.dlogits, a.hf, W.Wte)
	delta(-1, SiteHead, a.dh, a.dlogits, a.hf)
	be.LayerNormBackward(a.dres, G.LnFG, G.LnFB, a.dh, a.res[cfg.NLayer], W.LnFG, cfg.LNEps)
	// a.dres now holds the gradient of the residual stream entering ln_f.
	for l := cfg.NLayer - 1; l >= 0; l-- {
		L, GL := W.Layers[l], G.Layers[l]
		// MLP: res[l+1] = x2 + fc2(gelu(fc(ln_2(x2))))
		be.MatMulBackward(a.dgel, GL.Fc2W, GL.Fc2B, a.dres, a.gel[l], L.Fc2W)
		delta(l, SiteFC2, a.dgel, a.dres, a.gel[l])
		be.GELUBackward(a.dfc, a.dgel, a.fc[l])
		be.MatMulBackward(a.dh, GL.FcW, GL.FcB, a.dfc, a.h2[l], L.FcW)
		delta(l, SiteFC, a.dh, a.dfc, a.h2[l])
		be.LayerNormBackward(a.dx2, GL.Ln2G, GL.Ln2B, a.dh, a.x2[l], L.Ln2G, cfg.LNEps)
		be.Accumulate(a.dx2, a.dres) // + the residual path
		// attention: x2 = res[l] + proj(attn(qkv(ln_1(res[l]))))
		be.MatMulBackward(a.datt, GL.ProjW, GL.ProjB, a.dx2, a.att[l], L.ProjW)
		delta(l, SiteProj, a.datt, a.dx2, a.att[l])
		be.AttentionBackward(a.dqkv, a.datt, a.qkv[l], a.att[l], a.lse[l], a.qlen, cfg.NHead)
		be.MatMulBackward(a.dh, GL.AttnW, GL.AttnB, a.dqkv, a.h1[l], L.AttnW)
		delta(l, SiteQKV, a.dh, a.dqkv, a.h1[l])
		be.LayerNormBackward(a.dres, GL.Ln1G, GL.Ln1B, a.dh, a.res[l], L.Ln1G, cfg.LNEps)
		be.Accumulate(a.dres, a.dx2) // + the residual path: dres is now d res[l]
	}
	be.EmbedBackward(G.Wte, G.Wpe, a.dres, a.tokB, a.posB)
	return derr
}

// FLOPsPerStep estimates the floating-point operations of one training step
// (forward + backward, 3x the forward's matmul and attention FLOPs) on nb
// full sequences of nt tokens: per token the forward's matmuls cost
// 2*(12*L*C² + V*C) and causal attention 2*2*C*(nt+1)/2 per layer.
func FLOPsPerStep(cfg model.Config, nb, nt int) float64 {
	C, L, V := float64(cfg.NEmbd), float64(cfg.NLayer), float64(cfg.VocabSize)
	perTok := 2*(12*L*C*C+V*C) + L*2*C*float64(nt+1)
	return 3 * perTok * float64(nb*nt)
}

// finite reports whether x is neither NaN nor ±Inf.
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// FromModel makes a trainable copy of an inference model's weights (read
// back from its device, converted to F32) on b, e.g. a frozen base that a
// Delta adapts.
func FromModel(b gpu.TrainBackend, m *model.Model) (*Model, error) {
	host, err := readHost(m.B, m.Cfg, m.W.Tensors())
	if err != nil {
		return nil, fmt.Errorf("train: reading the model's weights: %w", err)
	}
	return New(b, m.Cfg, host)
}
