package serve

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
)

// The neural cache in the server (Options.CacheNeural; the package doc
// describes it). slotNeural is the scheduler's half: one device key
// buffer with a region per slot, its snapshot's pool keys first (uploaded
// at install, gpu.RangeWriter) and then an own block as long as the
// context, its prompt's keys uploaded at install and one key per step
// written by adapt.Ops.NeuralMix itself (the unit query of the row). A
// key's value is the token that followed it: set on the host when that
// token is fed (-1 before), the values uploaded whole when they changed.
// After CacheMix (run with the token weights rescaled, adapt.NeuralRescale)
// NeuralMix mixes in each row's own and pool keys, every row reading only
// its slot's region.

type slotNeural struct {
	c, ctx, poolCap, region int
	keysT, valsT, hidT      gpu.Tensor // (slots*region, C) keys, (slots*region) I32 values, (slots, C) the step's hidden states
	rw                      gpu.RangeWriter
	vals                    []int32
	dirty                   bool
	// Per slot: pool keys, own keys written (prompt and queries), tokens
	// fed so far, its prompt's length.
	poolLen, written, fed, prompt []int
}

// newSlotNeural sizes and allocates the key buffer for slots sequences of
// context ctx, pools of at most poolKeys keys of width c over v tokens; a
// size the device binding or NeuralMix's loops cannot take is refused
// here, with the options to change, and NeuralMix runs once on it.
func newSlotNeural(ops adapt.Ops, slots, ctx, poolKeys, c, v int) (*slotNeural, error) {
	b := ops.Backend()
	rw, ok := b.(gpu.RangeWriter)
	if !ok {
		return nil, fmt.Errorf("serve: neural cache: backend %s cannot write part of a buffer (gpu.RangeWriter)", b.Name())
	}
	pc := max(poolKeys, ctx) // a pool's newest prompt stays even when longer than its bound
	nc := &slotNeural{c: c, ctx: ctx, poolCap: pc, region: pc + ctx, rw: rw,
		poolLen: make([]int, slots), written: make([]int, slots), fed: make([]int, slots), prompt: make([]int, slots)}
	kn := slots * nc.region
	if bytes := kn * c * 4; bytes > adapt.NeuralKeyBytes {
		return nil, fmt.Errorf("serve: neural cache: %d slots x (%d pool + %d own keys) of width %d need %d bytes, over the %d of a storage binding: "+
			"lower the slots, the pool keys (--cache-keys, Options.CacheKeys) or turn the neural cache off (--cache-neural=false)",
			slots, pc, ctx, c, bytes, adapt.NeuralKeyBytes)
	}
	nc.vals = make([]int32, kn)
	for i := range nc.vals {
		nc.vals[i] = -1
	}
	var err error
	if nc.keysT, err = b.Alloc(gpu.F32, kn, c); err == nil {
		err = b.Write(nc.keysT, make([]float32, kn*c))
	}
	if err == nil {
		nc.valsT, err = b.Alloc(gpu.I32, kn)
	}
	if err == nil {
		nc.hidT, err = b.Alloc(gpu.F32, slots, c)
	}
	if err == nil {
		err = nc.probe(ops, v)
	}
	if err != nil {
		nc.free(b)
		return nil, fmt.Errorf("serve: neural cache: %w", err)
	}
	return nc, nil
}

// probe runs NeuralMix once over a full region (a no-op row): a width or
// a key count the kernel does not take fails at start.
func (nc *slotNeural) probe(ops adapt.Ops, v int) error {
	b := ops.Backend()
	rp, most := adapt.NeuralRowParams([]adapt.NeuralRow{{OwnLen: nc.ctx, PoolLen: nc.poolCap, Slot: -1}})
	var ts []gpu.Tensor
	defer func() {
		for _, t := range ts {
			b.Free(t)
		}
	}()
	up := func(data []float32, shape ...int) (gpu.Tensor, error) {
		t, err := b.Alloc(gpu.F32, shape...)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
		return t, b.Write(t, data)
	}
	h, err := up(make([]float32, nc.c), 1, nc.c)
	if err != nil {
		return err
	}
	dst, err := up(make([]float32, v), 1, v)
	if err != nil {
		return err
	}
	rpT, err := up(rp, 1, 8)
	if err != nil {
		return err
	}
	if err := b.Write(nc.valsT, nc.vals); err != nil {
		return err
	}
	if err := ops.NeuralMix(dst, h, nc.keysT, nc.valsT, rpT, most); err != nil {
		return err
	}
	return b.Flush()
}

func (nc *slotNeural) free(b gpu.Backend) {
	for _, t := range []gpu.Tensor{nc.keysT, nc.valsT, nc.hidT} {
		if t != nil {
			b.Free(t)
		}
	}
	nc.keysT, nc.valsT, nc.hidT = nil, nil, nil
}

// install gives slot b the snapshot's pool keys and its prompt's own keys
// (hid: unit hidden states at positions 0 .. len-2).
func (nc *slotNeural) install(b int, keys *adapt.NeuralKeys, prompt []int32, hid []float32) error {
	n, l := keys.Len(), len(hid)/nc.c
	if n > nc.poolCap || l != max(len(prompt)-1, 0) || l >= nc.ctx {
		return fmt.Errorf("serve: neural cache: %d pool keys (room for %d), %d prompt keys for %d tokens (a context of %d)", n, nc.poolCap, l, len(prompt), nc.ctx)
	}
	base, own := b*nc.region, b*nc.region+nc.poolCap
	if err := nc.rw.WriteAt(nc.keysT, base*nc.c, keys.K); err != nil {
		return err
	}
	if err := nc.rw.WriteAt(nc.keysT, own*nc.c, hid); err != nil {
		return err
	}
	vals := nc.vals[base : base+nc.region]
	for i := range vals {
		vals[i] = -1
	}
	copy(vals, keys.V)
	copy(vals[nc.poolCap:], prompt[1:l+1])
	nc.poolLen[b], nc.written[b], nc.fed[b], nc.prompt[b] = n, l, 0, len(prompt)
	nc.dirty = true
	return nil
}

// feed records the tokens fed to slot b this step: each is the value of
// the own key before it.
func (nc *slotNeural) feed(b int, ts []int32) {
	own := b*nc.region + nc.poolCap
	for _, t := range ts {
		if p := nc.fed[b]; p >= 1 && p-1 < nc.ctx {
			if k := own + p - 1; nc.vals[k] != t {
				nc.vals[k], nc.dirty = t, true
			}
		}
		nc.fed[b]++
	}
}

// rows is the step's NeuralMix rows of the slots on whose whole prompt is
// in (weights w): a row in the middle of its prompt's prefill samples
// nothing, and its keys are the prompt's already. ws[b] becomes the token
// cache's weights to run CacheMix with. It returns the rows' parameters
// and the most keys of a row.
func (nc *slotNeural) rows(on []bool, tokens [][]int32, w, ws []adapt.CacheWeights) ([]float32, int) {
	rows := make([]adapt.NeuralRow, len(on))
	for b := range rows {
		rows[b] = adapt.NeuralRow{Slot: -1}
		l := nc.fed[b]
		if !on[b] || l < nc.prompt[b] || len(tokens[b]) == 0 {
			continue
		}
		own := b*nc.region + nc.poolCap
		r := adapt.NeuralRow{OwnOff: own, OwnLen: min(l-1, nc.written[b]), PoolOff: b * nc.region, PoolLen: nc.poolLen[b],
			Theta: w[b].Theta, Own: w[b].NeuralOwn, Pool: w[b].NeuralPool, Slot: -1}
		if l-1 >= nc.written[b] && l-1 < nc.ctx {
			r.Slot = own + l - 1
			nc.written[b] = l // the kernel writes it this step
		}
		// A range without weight, or a weight without keys, is neither
		// scanned nor mixed (the kernel's work is per key).
		if r.OwnLen <= 0 || r.Own == 0 {
			r.Own, r.OwnLen = 0, 0
		}
		if r.PoolLen <= 0 || r.Pool == 0 {
			r.Pool, r.PoolLen = 0, 0
		}
		rows[b], ws[b] = r, adapt.NeuralRescale(ws[b], r.Own, r.Pool)
	}
	return adapt.NeuralRowParams(rows)
}

// upload puts the values on the device if they changed.
func (nc *slotNeural) upload(b gpu.Backend) error {
	if !nc.dirty {
		return nil
	}
	nc.dirty = false
	return b.Write(nc.valsT, nc.vals)
}
