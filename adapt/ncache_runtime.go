package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// The neural cache in the inference path (ncache.go has the method,
// ops_ncache.go the op). EnableCache reads back the final hidden states of
// its scoring forward (planTap); each pool chooses its four weights and
// theta on its prompts by leave-one-out, every member's terms built with
// the member out of both pools (ChooseMixWeights, as adaptrun's
// scoreNeural). The key buffer holds, per pool, its members' prompt keys
// twice over but the last member's second copy (a ring: member a's pool
// range, the other members' blocks, is contiguous from member a+1's
// block), then per plan sequence an own block as long as the context,
// its prompt's keys already in. CacheAdapter's pass runs cache_mix with
// the token weights rescaled (NeuralRescale), then ncache_mix, which
// writes the query of each row's last position into its sequence's next
// own slot; that key's value, the next token, is set when the forward
// that runs the token is observed.

// NeuralKeyBytes bounds a neural cache's key buffer (a plan's, a
// server's): WebGPU's default storage binding, lavapipe's limit too.
const NeuralKeyBytes = 128 << 20

// planNeural is a plan's neural cache.
type planNeural struct {
	c, cap       int        // key width, own keys per sequence (the context)
	keysT, valsT gpu.Tensor // (Kn, C) unit keys, (Kn) I32 their next tokens (-1: not known yet)
	vals         []int32    // valsT on the host
	dirty        bool       // vals changed since the last upload
	// Per plan sequence: its pool range and own block in the key buffer,
	// its own keys written (its prompt's, then one per forward) and the
	// tokens it has run through the model (its own keys' values).
	poolOff, poolLen, ownOff, written []int
	tokens                            [][]int32
}

// neuralWeights chooses pool g's weights: the token and neural caches'
// terms of every member with the member out of both pools (hid[i]: its
// unit hidden states at positions 0 .. len-2, lp[i] its losses there).
// It returns the members' terms too (in g's order).
func neuralWeights(g []int, seqs [][]int32, lp, hid [][]float32, c int, cfg CacheConfig) (CacheWeights, []*MixTerms, error) {
	members := make([]*MixTerms, 0, len(g))
	for _, i := range g {
		var others []PoolPrompt
		for _, j := range g {
			if j != i {
				others = append(others, PoolPrompt{Tokens: seqs[j], Hidden: hid[j]})
			}
		}
		t, err := PoolTerms(seqs[i], lp[i], hid[i], max(len(seqs[i])-1, 0), c, others, nil, cfg, DefaultThetas)
		if err != nil {
			return CacheWeights{}, nil, err
		}
		members = append(members, t)
	}
	allow := MixChoice{Own: true, Pool: len(g) > 1, NeuralOwn: true, NeuralPool: len(g) > 1}
	return ChooseMixWeights(members, allow, cfg, DefaultThetas), members, nil
}

// newPlanNeural builds the key buffer for the pools groups of seqs (hid as
// for neuralWeights) on b, own blocks of capacity ctx, for a vocabulary of
// v. It refuses a pool whose keys, with a full context of own keys, are
// more than ncache_mix's loops take (found here, not in the middle of a
// generation).
func newPlanNeural(b gpu.Backend, groups [][]int, seqs [][]int32, hid [][]float32, c, v, ctx int) (*planNeural, error) {
	n := len(seqs)
	nc := &planNeural{c: c, cap: ctx, poolOff: make([]int, n), poolLen: make([]int, n), ownOff: make([]int, n),
		written: make([]int, n), tokens: make([][]int32, n)}
	kn := n * ctx
	for i, h := range hid {
		if len(h)/c >= ctx {
			return nil, fmt.Errorf("adapt: neural cache: prompt %d has %d keys for a context of %d", i, len(h)/c, ctx)
		}
	}
	for _, g := range groups {
		for a, i := range g {
			kn += len(hid[i]) / c * min(2, len(g)-a)
		}
	}
	if bytes := kn * c * 4; bytes > NeuralKeyBytes {
		return nil, fmt.Errorf("adapt: neural cache: %d keys of width %d (%d prompts, a context of %d) need %d bytes, over %d: run fewer prompts at a time",
			kn, c, n, ctx, bytes, NeuralKeyBytes)
	}
	keys := make([]float32, 0, kn*c)
	vals := make([]int32, 0, kn)
	add := func(i int) {
		keys = append(keys, hid[i]...)
		vals = append(vals, seqs[i][1:len(hid[i])/c+1]...)
	}
	for _, g := range groups {
		ring := append(append([]int(nil), g...), g[:len(g)-1]...)
		start, total := make([]int, len(ring)+1), 0
		for pos, i := range ring {
			start[pos] = len(vals)
			add(i)
			if pos < len(g) {
				total += len(hid[i]) / c
			}
		}
		start[len(ring)] = len(vals)
		for a, i := range g {
			nc.poolOff[i], nc.poolLen[i] = start[a+1], total-len(hid[i])/c
			if most := nc.poolLen[i] + ctx; neuralLoops(c, v, most) > neuralLoopCap {
				return nil, fmt.Errorf("adapt: neural cache: a pool of %d prompt positions and a context of %d are %d keys, more than the kernel takes at width %d: fewer or shorter prompts per pool",
					nc.poolLen[i], ctx, most, c)
			}
		}
	}
	for i := range seqs {
		nc.ownOff[i], nc.written[i] = len(vals), len(hid[i])/c
		add(i)
		keys = append(keys, make([]float32, (ctx-nc.written[i])*c)...)
		for range ctx - nc.written[i] {
			vals = append(vals, -1)
		}
	}
	nc.vals = vals
	var err error
	if nc.keysT, err = uploadF32(b, keys, len(vals), c); err != nil {
		return nil, err
	}
	if nc.valsT, err = b.Alloc(gpu.I32, len(vals)); err == nil {
		err = b.Write(nc.valsT, vals)
	}
	if err != nil {
		nc.free(b)
		return nil, err
	}
	return nc, nil
}

func (nc *planNeural) free(b gpu.Backend) {
	for _, t := range []gpu.Tensor{nc.keysT, nc.valsT} {
		if t != nil {
			b.Free(t)
		}
	}
}

// observe records tokens run through the model by plan sequence i: each
// becomes the value of the own key before it.
func (nc *planNeural) observe(i int, ts []int32) {
	for _, t := range ts {
		if pos := len(nc.tokens[i]); pos >= 1 && pos-1 < nc.cap {
			nc.vals[nc.ownOff[i]+pos-1] = t
			nc.dirty = true
		}
		nc.tokens[i] = append(nc.tokens[i], t)
	}
}

// neuralStep is one forward's neural cache: the rows' parameters and the
// own keys the forward writes (sequence, keys written after it).
type neuralStep struct {
	rp      gpu.Tensor
	most    int
	written [][2]int
}

// rows uploads the values if they changed and the parameters of logits
// rows head (sequences seqOf); ws[r] (each row's pool weights) become the
// token cache's rescaled weights.
func (nc *planNeural) rows(b gpu.Backend, head []int32, seqOf func(int32) int, group []int, weights []CacheWeights, ws []CacheWeights) (*neuralStep, error) {
	if nc.dirty {
		if err := b.Write(nc.valsT, nc.vals); err != nil {
			return nil, err
		}
		nc.dirty = false
	}
	st := &neuralStep{}
	rows := make([]NeuralRow, len(head))
	for r, s := range head {
		rows[r] = NeuralRow{Slot: -1}
		i := seqOf(s)
		if i < 0 || i >= len(nc.tokens) || len(nc.tokens[i]) == 0 {
			continue
		}
		w, l := weights[group[i]], len(nc.tokens[i])
		nr := NeuralRow{OwnOff: nc.ownOff[i], OwnLen: min(l-1, nc.written[i]), PoolOff: nc.poolOff[i], PoolLen: nc.poolLen[i],
			Theta: w.Theta, Own: w.NeuralOwn, Pool: w.NeuralPool, Slot: -1}
		if l-1 >= nc.written[i] && l-1 < nc.cap {
			nr.Slot = nc.ownOff[i] + l - 1
			st.written = append(st.written, [2]int{i, l})
		}
		if nr.OwnLen <= 0 {
			nr.Own = 0
		}
		if nr.PoolLen <= 0 {
			nr.Pool = 0
		}
		rows[r], ws[r] = nr, NeuralRescale(ws[r], nr.Own, nr.Pool)
	}
	rp, most := NeuralRowParams(rows)
	var err error
	st.most = most
	if st.rp, err = uploadF32(b, rp, len(head), 8); err != nil {
		return nil, err
	}
	return st, nil
}

// ScoreHidden is m.Score(seqs, nil, ad) (ad nil: the base model) that
// also returns each sequence's final hidden states (the ln_f output the
// head reads) at the positions that have a loss, 0 .. len-2, as unit rows:
// the neural cache's keys and queries.
func ScoreHidden(m *model.Model, seqs [][]int32, ad model.Adapter) ([]model.SequenceScore, [][]float32, error) {
	var hs []float32
	tap := TapHidden(ad, func(h gpu.Tensor, _ []int32) (err error) {
		hs, err = m.B.ReadF32(h)
		return err
	})
	sc, err := m.Score(seqs, nil, tap)
	if err != nil {
		return nil, nil, err
	}
	c := m.Cfg.NEmbd
	tq := len(hs) / (c * len(seqs))
	hid := make([][]float32, len(seqs))
	for i, s := range seqs {
		hid[i] = UnitRows(hs[i*tq*c:(i*tq+len(s)-1)*c], c)
	}
	return sc, hid, nil
}

// ScoreHiddenChunked is ScoreHidden over the batches of m.ScoreChunks(seqs)
// (each forward's logits under 64 MiB): adapterOf(first, end) is the
// adapter of the batch of sequences [first, end) (nil: the base model).
func ScoreHiddenChunked(m *model.Model, seqs [][]int32, adapterOf func(first, end int) model.Adapter) ([]model.SequenceScore, [][]float32, error) {
	var sc []model.SequenceScore
	var hid [][]float32
	for _, c := range m.ScoreChunks(seqs) {
		s, h, err := ScoreHidden(m, seqs[c[0]:c[1]], adapterOf(c[0], c[1]))
		if err != nil {
			return nil, nil, err
		}
		sc, hid = append(sc, s...), append(hid, h...)
	}
	return sc, hid, nil
}
