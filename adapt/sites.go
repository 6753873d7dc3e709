package adapt

import (
	"fmt"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Updates inside the decoder. An adapter whose Meta.Sites is not empty
// also updates those block sites (model.SiteQKV, ...) of every layer,
// each row with its own cluster's low-rank pair, as the output projection
// is updated:
//
//	y[m] = x[m] W + b + alpha * B_c (A_c x[m]),  c = cluster[m]
//
// through Ops.LowRankU (u = alpha A_c x, rows of many clusters in one
// dispatch) and Ops.SiteMatMul (the site's matmul with y += B_c u as its
// epilogue where a fused kernel exists, else the matmul and
// Ops.AddLowRank): the shrink and expand halves of SGMV, the expand in
// the matmul's dispatches (planPass.MatMul). A site's pair is
//   - generated (hyper adapters): its own last layer on the hyper-network's
//     last hidden layer, Linear(Hn, R*in + out*R), packed as the head's;
//   - static (lora adapters, and hyper adapters with StaticSites: the
//     paper's v3, LoRA in the transformer with a generated head): one
//     pair A (1, R, in), B (1, out, R) that every adapted row uses.
//
// Tensors, after the head's (HyperSpec or StaticSpec) and before the
// centroids: site.<layer>.<name>.weight and .bias (generated), or
// site.<layer>.<name>.A and .B (static), layer by layer in Meta.Sites order.

// siteTensorName is the file name of a site tensor ("weight", "bias", "A", "B").
func siteTensorName(s model.Site, what string) string {
	return fmt.Sprintf("site.%d.%s.%s", s.Layer, s.Name, what)
}

// sitesOf lists the block sites m updates, layer by layer.
func (m Meta) sitesOf() []model.Site {
	var out []model.Site
	for l := 0; l < m.Base.Config.NLayer && len(m.Sites) > 0; l++ {
		for _, n := range m.Sites {
			out = append(out, model.Site{Layer: l, Name: n})
		}
	}
	return out
}

// generatedSites reports whether m's block sites are generated.
func (m Meta) generatedSites() bool { return m.Kind == KindHyper && !m.StaticSites }

// validateSites checks Sites and StaticSites against the kind.
func (m Meta) validateSites() error {
	if len(m.Sites) == 0 {
		if m.StaticSites {
			return fmt.Errorf("static_sites without sites")
		}
		return nil
	}
	if m.Kind == KindExperts {
		return fmt.Errorf("an experts adapter updates the output projection only (sites %v)", m.Sites)
	}
	if m.StaticSites && m.Kind != KindHyper {
		return fmt.Errorf("static_sites is for hyper adapters (a %s adapter's sites are static already)", m.Kind)
	}
	for i, n := range m.Sites {
		if !slices.Contains(model.DecoderSites, n) {
			return fmt.Errorf("unknown decoder site %q (want some of %v)", n, model.DecoderSites)
		}
		if slices.Contains(m.Sites[:i], n) {
			return fmt.Errorf("decoder site %q listed twice", n)
		}
	}
	return nil
}

// siteSpec is the name and shape of every site tensor of m.
func (m Meta) siteSpec() []model.HostTensor {
	var out []model.HostTensor
	cfg := m.Base.Config
	r := m.Rank
	for _, s := range m.sitesOf() {
		in, o, _ := cfg.SiteShape(s.Name)
		if m.generatedSites() {
			h := m.Hidden[len(m.Hidden)-1]
			out = append(out,
				model.HostTensor{Name: siteTensorName(s, "weight"), Shape: []int{r*in + o*r, h}},
				model.HostTensor{Name: siteTensorName(s, "bias"), Shape: []int{r*in + o*r}})
		} else {
			out = append(out,
				model.HostTensor{Name: siteTensorName(s, "A"), Shape: []int{1, r, in}},
				model.HostTensor{Name: siteTensorName(s, "B"), Shape: []int{1, o, r}})
		}
	}
	return out
}

// siteUpdate is one block site's parameters on the device.
type siteUpdate struct {
	site    model.Site
	in, out int
	gen     Linear  // generated: the site's last layer
	static  Factors // static: the one pair (K = 1)
}

// uploadSites puts a's site tensors (they follow the head's n tensors) on
// b, keyed by site.
func (a *Adapter) uploadSites(b gpu.Backend, n int) (map[model.Site]*siteUpdate, error) {
	sites := a.Meta.sitesOf()
	if len(sites) == 0 {
		return nil, nil
	}
	host := a.Tensors[n : n+2*len(sites)]
	out := map[model.Site]*siteUpdate{}
	var live []gpu.Tensor
	for i, s := range sites {
		in, o, _ := a.Meta.Base.Config.SiteShape(s.Name)
		u := &siteUpdate{site: s, in: in, out: o}
		var pair [2]gpu.Tensor
		for j := range pair {
			h := host[2*i+j]
			t, err := b.Alloc(gpu.F32, h.Shape...)
			if err == nil {
				err = b.Write(t, h.Data)
			}
			if err != nil {
				freeAll(b, append(live, t))
				return nil, fmt.Errorf("adapt: site tensor %s: %w", h.Name, err)
			}
			pair[j] = t
			live = append(live, t)
		}
		if a.Meta.generatedSites() {
			u.gen = Linear{W: pair[0], Bias: pair[1]}
		} else {
			u.static = NewFactors(pair[0], pair[1])
		}
		out[s] = u
	}
	return out, nil
}

// free releases a site's tensors.
func (u *siteUpdate) free(b gpu.Backend) {
	for _, t := range []gpu.Tensor{u.gen.W, u.gen.Bias, u.static.A, u.static.B} {
		if t != nil {
			b.Free(t)
		}
	}
}

// generateSites makes the plan's factors of every generated site from the
// hyper-network's last hidden layer z (K, Hn); static sites use their pair.
func (p *Plan) generateSites(z gpu.Tensor) error {
	b := p.rt.M.B
	p.siteF = map[model.Site]Factors{}
	for s, u := range p.rt.sites {
		if u.gen.W == nil {
			p.siteF[s] = u.static
			continue
		}
		r := p.rt.Meta.Rank
		t, err := b.Alloc(gpu.F32, p.K, r*u.in+u.out*r)
		if err != nil {
			return fmt.Errorf("adapt: factors of site %d.%s for %d clusters: %w", s.Layer, s.Name, p.K, err)
		}
		p.sitePacked = append(p.sitePacked, t)
		b.MatMul(t, z, u.gen.W, u.gen.Bias)
		p.siteF[s] = PackedFactors(t, r, u.in, u.out)
	}
	return nil
}

// Adapter is the model.Adapter that gives each row its sequence's cluster's
// updates: the output projection's and, for an adapter with Sites, every
// block site's. Rows of padding and of sequences with cluster -1 keep the
// base model. on, if not nil, turns adaptation off for sequence i where
// on[i] is false.
func (p *Plan) Adapter(on []bool) model.Adapter { return p.AdapterFrom(0, on) }

// AdapterFrom is Adapter for a batch that holds the plan's sequences first,
// first+1, ...: the forward's sequence s is the plan's sequence first+s
// (e.g. one batch of windows of a perplexity run planned as a whole).
func (p *Plan) AdapterFrom(first int, on []bool) model.Adapter {
	return planAdapter{p: p, first: first, on: on}
}

// AdapterOf is Adapter for a batch whose sequence s is the plan's sequence
// index[s] (e.g. the prompts of a plan that have something to score).
func (p *Plan) AdapterOf(index []int, on []bool) model.Adapter {
	return planAdapter{p: p, index: index, on: on}
}

type planAdapter struct {
	p     *Plan
	first int
	index []int // if set, the plan's sequence of each of the forward's (else first+s)
	on    []bool
}

// planSeq is the plan's sequence of the forward's sequence s (-1: none).
func (a planAdapter) planSeq(s int32) int {
	switch {
	case s < 0:
		return -1
	case a.index != nil:
		if int(s) >= len(a.index) {
			return -1
		}
		return a.index[s]
	}
	return int(s) + a.first
}

// planPass is one forward's adaptation: the rows' clusters on the device.
type planPass struct {
	p          *Plan
	rows, head gpu.Tensor // each activation row's and logits row's cluster
	rows0      gpu.Tensor // 0 for an adapted row, -1 otherwise: the static sites' pair
	head0      gpu.Tensor // the same for the logits rows: a hybrid adapter's static pair
	live       []gpu.Tensor
}

// Begin implements model.Adapter: it maps rows to clusters and uploads
// them (nothing when no row is adapted: the pass is then the base model's).
func (a planAdapter) Begin(rows, head []int32) (model.Pass, error) {
	p := a.p
	clusterOf := func(seq []int32) ([]int32, bool) {
		cl := make([]int32, len(seq))
		adapted := false
		for r, s := range seq {
			cl[r] = -1
			if i := a.planSeq(s); i >= 0 && i < len(p.Cluster) && (a.on == nil || a.on[i]) && p.Cluster[i] >= 0 {
				cl[r] = int32(p.Cluster[i])
				adapted = true
			}
		}
		return cl, adapted
	}
	hc, adapted := clusterOf(head)
	pass := &planPass{p: p}
	if !adapted {
		return pass, nil // no row adapted (a row of the head's has a row of the activations)
	}
	b := p.rt.M.B
	upload := func(v []int32) (gpu.Tensor, error) {
		t, err := b.Alloc(gpu.I32, len(v))
		if err != nil {
			return nil, err
		}
		pass.live = append(pass.live, t)
		return t, b.Write(t, v)
	}
	var err error
	if pass.head, err = upload(hc); err != nil {
		pass.End()
		return nil, err
	}
	if p.rt.pair != nil {
		h0 := make([]int32, len(hc))
		for r, c := range hc {
			h0[r] = min(c, 0)
		}
		if pass.head0, err = upload(h0); err != nil {
			pass.End()
			return nil, err
		}
	}
	if len(p.rt.sites) == 0 {
		return pass, nil
	}
	rc, _ := clusterOf(rows)
	if pass.rows, err = upload(rc); err != nil {
		pass.End()
		return nil, err
	}
	if !p.rt.Meta.generatedSites() {
		for r, c := range rc {
			rc[r] = min(c, 0)
		}
		if pass.rows0, err = upload(rc); err != nil {
			pass.End()
			return nil, err
		}
	}
	return pass, nil
}

// Linear implements model.Pass: y += alpha B_c (A_c x) for every adapted
// row, after the forward's matmul wrote y: the separate path, which the
// forward takes where MatMul declines the site (Runtime.SeparateSiteExpand).
func (q *planPass) Linear(s model.Site, y, x gpu.Tensor) error {
	f, cl, u, err := q.shrink(s, x)
	if err != nil || u == nil {
		return err
	}
	return q.p.rt.ops.AddLowRank(y, u, f, cl)
}

// MatMul implements model.MatMulPass: site s's matmul and its update in
// Ops.SiteMatMul (the shrink, then the matmul with the expand as its
// epilogue where a fused kernel exists), unless the plan does not update
// s or Runtime.SeparateSiteExpand asks for the forward's MatMul and Linear.
func (q *planPass) MatMul(s model.Site, y, x, w, bias gpu.Tensor) (bool, error) {
	if q.p.rt.SeparateSiteExpand || !q.Updates(s) {
		return false, nil
	}
	f, cl, u, err := q.shrink(s, x)
	if err != nil {
		return true, err
	}
	return true, q.p.rt.ops.SiteMatMul(y, x, w, bias, u, f, cl)
}

// shrink records site s's shrink of its input x, u = alpha A_c x, and
// returns the site's factors, the rows' clusters and u (nil: the pass does
// not update s).
func (q *planPass) shrink(s model.Site, x gpu.Tensor) (Factors, gpu.Tensor, gpu.Tensor, error) {
	f, ok := q.p.siteF[s]
	if !ok || q.rows == nil {
		return f, nil, nil, nil
	}
	cl := q.rows
	if q.rows0 != nil {
		cl = q.rows0
	}
	m, _ := rows(x)
	u, err := q.p.rt.M.B.Alloc(gpu.F32, m, f.R)
	if err != nil {
		return f, nil, nil, fmt.Errorf("adapt: site %d.%s: %w", s.Layer, s.Name, err)
	}
	q.live = append(q.live, u)
	q.p.rt.ops.LowRankU(u, x, f, cl, q.p.Alpha)
	return f, cl, u, nil
}

// Updates implements model.Pass: the sites the plan adapts, when some row
// of this forward is adapted.
func (q *planPass) Updates(s model.Site) bool {
	_, ok := q.p.siteF[s]
	return ok && q.rows != nil
}

// Logits implements model.Pass: the output projection with each row's
// update, in one fused kernel; a hybrid adapter's static pair is then
// added to every adapted row (LowRankU, AddLowRank).
func (q *planPass) Logits(dst, h gpu.Tensor) (bool, error) {
	if q.head == nil {
		return false, nil
	}
	p := q.p
	if err := p.rt.ops.Logits(dst, h, p.rt.M.W.Head(), nil, p.factors, q.head, p.Alpha); err != nil || p.rt.pair == nil {
		return true, err
	}
	f := p.rt.pair.Factors()
	m, _ := rows(h)
	u, err := p.rt.M.B.Alloc(gpu.F32, m, f.R)
	if err != nil {
		return true, fmt.Errorf("adapt: static pair of the output projection: %w", err)
	}
	q.live = append(q.live, u)
	p.rt.ops.LowRankU(u, h, f, q.head0, p.Alpha)
	return true, p.rt.ops.AddLowRank(dst, u, f, q.head0)
}

// End implements model.Pass.
func (q *planPass) End() {
	freeAll(q.p.rt.M.B, q.live)
	q.live = nil
}
