package adapt

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// cacheHost recomputes a plan's cache mixture on the host: each prompt's
// unit hidden states from a forward of the prompt alone through its plan
// sequence's adapter.
type cacheHost struct {
	m       *model.Model
	p       *Plan
	prompts [][]int32
	cfg     CacheConfig
	hid     [][]float32 // per prompt: unit hidden states at positions 0 .. len-2
	// heldOut leaves the prompt itself out of its token pool (CacheHeldOut's
	// scoring; generation's pool counts it).
	heldOut bool
}

func newCacheHost(t *testing.T, m *model.Model, p *Plan, prompts [][]int32, cfg CacheConfig) *cacheHost {
	h := &cacheHost{m: m, p: p, prompts: prompts, cfg: cfg}
	c := m.Cfg.NEmbd
	for i, s := range prompts {
		_, u := h.forward(t, i, s)
		h.hid = append(h.hid, u[:(len(s)-1)*c])
	}
	return h
}

// forward runs ctx alone through plan sequence i's adapter: its logits
// (L, V) and unit hidden states (L, C).
func (h *cacheHost) forward(t *testing.T, i int, ctx []int32) ([]float32, []float32) {
	var hs []float32
	tap := TapHidden(h.p.AdapterFrom(i, nil), func(x gpu.Tensor, _ []int32) (err error) {
		hs, err = h.m.B.ReadF32(x)
		return err
	})
	lg := forwardWith(t, h.m, [][]int32{ctx}, tap)
	return lg, UnitRows(hs, h.m.Cfg.NEmbd)
}

// mixture is log p'(y) over the vocabulary for plan sequence i after
// context ctx, under weights w: the model's distribution at ctx's last
// position; own counts ctx and own keys its earlier positions (values:
// the tokens that followed); pool counts every prompt of i's pool, pool
// keys the other members' prompts'; a neural weight without keys given
// back to p.
func (h *cacheHost) mixture(t *testing.T, i int, ctx []int32, w CacheWeights) []float64 {
	c, v, l := h.m.Cfg.NEmbd, h.m.Cfg.VocabSize, len(ctx)
	lg, u := h.forward(t, i, ctx)
	row := lg[(l-1)*v : l*v]
	mx := slices.Max(row)
	sum := 0.0
	for _, x := range row {
		sum += math.Exp(float64(x - mx))
	}
	g, _, _ := h.p.CacheWeightsOf(i)
	own, pool := &TokenCounts{}, &TokenCounts{}
	own.Add(ctx...)
	poolKeys := &NeuralKeys{C: c}
	for j, s := range h.prompts {
		if gj, _, _ := h.p.CacheWeightsOf(j); gj == g {
			if j != i || !h.heldOut {
				pool.Add(s...)
			}
			if j != i {
				if err := poolKeys.Add(h.hid[j], s[1:]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	q := u[(l-1)*c : l*c]
	qn := func(keys []float32, vals []int32) []float64 {
		out := make([]float64, v)
		den := 0.0
		for k, y := range vals {
			dot := 0.0
			for a, x := range q {
				dot += float64(x) * float64(keys[k*c+a])
			}
			e := math.Exp(w.Theta * (dot - 1))
			out[y] += e
			den += e
		}
		for y := range out {
			out[y] /= den
		}
		return out
	}
	cw, dw := w.NeuralOwn, w.NeuralPool
	var qo, qp []float64
	if l > 1 {
		qo = qn(u[:(l-1)*c], ctx[1:])
	} else {
		cw = 0
	}
	if poolKeys.Len() > 0 {
		qp = qn(poolKeys.K, poolKeys.V)
	} else {
		dw = 0
	}
	out := make([]float64, v)
	for y := range v {
		pr := (1 - w.Own - w.Pool - cw - dw) * math.Exp(float64(row[y]-mx)) / sum
		pr += w.Own*own.Prob(int32(y), h.cfg) + w.Pool*pool.Prob(int32(y), h.cfg)
		if cw > 0 {
			pr += cw * qo[y]
		}
		if dw > 0 {
			pr += dw * qp[y]
		}
		out[y] = math.Log(pr)
	}
	return out
}

// TestNeuralCacheSteps: with every pool's weights set to use all four
// components (so that no term can be left out unseen), three forwards
// through CacheAdapter (the prompts, then two tokens each) give, row for
// row, the log-probabilities of the host mixture of the whole context so
// far; own keys grow with each step (ncache_mix's slot writes, the values
// set as the tokens are observed). Both backends.
func TestNeuralCacheSteps(t *testing.T) {
	f := newRTFixture(t)
	a := f.hyperAdapter(t, nil)
	prompts, _ := f.prompts(7, 3)
	cfg := UniformCache(rtCfg.VocabSize)
	v := rtCfg.VocabSize
	for _, name := range []string{"ref", "webgpu"} {
		m, p := f.models[name], f.plan(t, name, a, prompts)
		if err := p.EnableCache(prompts, cfg, 4); err != nil {
			t.Fatal(err)
		}
		if p.cache.neural == nil {
			t.Fatal("EnableCache: no neural cache")
		}
		forced := CacheWeights{Own: 0.1, Pool: 0.05, NeuralOwn: 0.3, NeuralPool: 0.25, Theta: 10}
		for g := range p.cache.Weights {
			p.cache.Weights[g] = forced
		}
		host := newCacheHost(t, m, p, prompts, cfg)
		ad, err := p.CacheAdapter(nil)
		if err != nil {
			t.Fatal(err)
		}
		kv, err := m.NewCache(len(prompts), m.Cfg.NCtx)
		if err != nil {
			t.Fatal(err)
		}
		ctx := make([][]int32, len(prompts))
		step := prompts
		for k := range 3 {
			lg, err := m.ForwardAdapted(kv, step, true, ad)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.B.ReadF32(lg)
			m.B.Free(lg)
			if err != nil {
				t.Fatal(err)
			}
			next := make([][]int32, len(prompts))
			for i := range prompts {
				ctx[i] = append(ctx[i], step[i]...)
				want := host.mixture(t, i, ctx[i], forced)
				w32 := make([]float32, v)
				for y, x := range want {
					w32[y] = float32(x)
				}
				if err := conformance.AllClose(got[i*v:(i+1)*v], w32, 2e-4, 1e-4); err != nil {
					t.Errorf("%s step %d prompt %d (context %d): %v", name, k, i, len(ctx[i]), err)
				}
				next[i] = []int32{int32((i + 3*k) % v)} // any token: the values follow what is run
			}
			step = next
		}
		m.FreeCache(kv)
	}
}

// TestNeuralKeyBuffer: each member's pool range in the key buffer holds
// exactly the other members' prompt keys and values (the ring, from the
// next member on), a lone member's is empty, each own block holds its
// prompt's keys and values and then unknown values (-1) up to the
// context; a pool with more keys than ncache_mix's loops take is refused.
func TestNeuralKeyBuffer(t *testing.T) {
	b := ref.New()
	const c, v, ctx = 4, 50, 20
	r := rand.New(rand.NewPCG(1, 1))
	lens := []int{5, 1, 9, 3}
	seqs, hid := make([][]int32, len(lens)), make([][]float32, len(lens))
	for i, l := range lens {
		for range l {
			seqs[i] = append(seqs[i], int32(r.IntN(v)))
		}
		hid[i] = UnitRows(randn(r, (l-1)*c, 1), c)
	}
	groups := [][]int{{0, 2, 3}, {1}}
	nc, err := newPlanNeural(b, groups, seqs, hid, c, v, ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.free(b)
	keys, err := b.ReadF32(nc.keysT)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := b.ReadI32(nc.valsT)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		for a, i := range g {
			var wantK []float32
			var wantV []int32
			for j := 1; j < len(g); j++ {
				o := g[(a+j)%len(g)]
				wantK, wantV = append(wantK, hid[o]...), append(wantV, seqs[o][1:]...)
			}
			off, n := nc.poolOff[i], nc.poolLen[i]
			if n != len(wantV) || !slices.Equal(vals[off:off+n], wantV) || !slices.Equal(keys[off*c:(off+n)*c], wantK) {
				t.Errorf("sequence %d: pool range [%d, +%d) holds %v, want the others' %v", i, off, n, vals[off:off+n], wantV)
			}
			o, l := nc.ownOff[i], lens[i]-1
			if nc.written[i] != l || !slices.Equal(keys[o*c:(o+l)*c], hid[i]) || !slices.Equal(vals[o:o+l], seqs[i][1:]) {
				t.Errorf("sequence %d: own block does not start with its prompt's %d keys", i, l)
			}
			for q := o + l; q < o+ctx; q++ {
				if vals[q] != -1 {
					t.Errorf("sequence %d: own slot %d has value %d before any token", i, q-o, vals[q])
				}
			}
		}
	}
	// One prompt of 60,000 positions (in a context that long) is a pool of
	// more keys than the kernel's loops take at width 4.
	long := make([]int32, 60001)
	big, err := newPlanNeural(b, [][]int{{0, 1}}, [][]int32{{1, 2}, long}, [][]float32{make([]float32, c), make([]float32, 60000*c)}, c, v, len(long))
	if err == nil {
		big.free(b)
		t.Fatal("a pool of 60,000 keys: no error")
	}
}
