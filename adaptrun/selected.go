package adaptrun

import (
	"fmt"
	"math"
	"slices"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/model"
)

// Selection by the prompt (GroupSelected): every update an adapter can
// apply is a candidate (an expert's, a table cluster's, or the
// hyper-network's for each of its training centroids), and each window
// gets the one under which its own prompt, known at serving time after
// the prefill, has the lowest loss (among its SelectNearest nearest); the
// base model where no candidate lowers it. Assignment in feature space (routed, online) sends a window
// to the nearest centroid whether or not that update suits it; here the
// window's own tokens decide, as the self-check does for one candidate,
// at one head pass over the prompt per candidate.

// SelectNearest is the number of candidates a window is scored under: its
// nearest centroids' updates (the adapter's training centroids; experts:
// the domains' mean features), all of them when the adapter has fewer. A
// hyper-network of clusters of 64 windows has 20 to 60 training
// centroids; the far ones' updates seldom suit a window, and every
// candidate costs a head pass over the prompt.
const SelectNearest = 8

// candidates is the number of updates t can apply, and a group of
// members all under candidate x.
func candidates(t *Trained) (int, func(members []int, x int) group, error) {
	if t == nil || t.Deep != nil || t.Cents == nil {
		return 0, nil, fmt.Errorf("adaptrun: grouping %q needs a head-only experts, table or hyper adapter with centroids, not %v", GroupSelected, kindOf(t))
	}
	switch t.M.Kind {
	case KindExperts, KindTable:
		k := t.Cents.K
		if t.M.Kind == KindExperts && k != len(t.Domains) {
			return 0, nil, fmt.Errorf("adaptrun: %s: %d centroids for %d experts", t.M.Name, k, len(t.Domains))
		}
		return k, func(ms []int, x int) group { return group{Members: ms, Cluster: uniform(len(ms), x), K: k} }, nil
	case KindHyper:
		return t.Cents.K, func(ms []int, x int) group {
			return group{Members: ms, Cluster: uniform(len(ms), 0), K: 1, Means: slices.Clone(t.Cents.Row(x))}
		}, nil
	}
	return 0, nil, fmt.Errorf("adaptrun: grouping %q does not apply to %v", GroupSelected, kindOf(t))
}

// selectKey names one selection: an adapter's choices for a set's windows
// depend on nothing else (not the gate, which acts after), so a row behind
// another gate, or the validation score of a row, reuses them.
type selectKey struct {
	t *Trained
	s *Set
}

// selectByPrompt returns, for each window of s, the candidate of t (see
// candidates; among the window's SelectNearest nearest) under which its
// prompt has the lowest summed loss, or -1 where none is below the base
// model's, and the groups that apply them (batches of e.Batch windows of
// one candidate; a window choosing the base model rides, at cluster -1,
// with its nearest candidate's).
func (e *Evaluator) selectByPrompt(t *Trained, s *Set, meta adapt.Meta, host []model.HostTensor) ([]int, []group, error) {
	k, cand, err := candidates(t)
	if err != nil {
		return nil, nil, err
	}
	near, err := t.Cents.Nearest(s.Feature(t.M.Features), SelectNearest)
	if err != nil {
		return nil, nil, err
	}
	choice, ok := e.selections[selectKey{t, s}]
	if !ok {
		if choice, err = e.choose(t, s, meta, host, k, cand, near); err != nil {
			return nil, nil, err
		}
		if e.selections == nil {
			e.selections = map[selectKey][]int{}
		}
		e.selections[selectKey{t, s}] = choice
	}
	by := make([][]int, k)
	for i, x := range choice {
		if x < 0 {
			x = near[i][0]
		}
		by[x] = append(by[x], i)
	}
	var gs []group
	for x := range k {
		for _, ch := range chunks(by[x], e.Batch) {
			g := cand(ch, x)
			for j, wi := range ch {
				if choice[wi] < 0 {
					g.Cluster[j] = -1
				}
			}
			gs = append(gs, g)
		}
	}
	return slices.Clone(choice), gs, nil
}

// choose scores each window's prompt under each of its near candidates
// and keeps the best, or -1 where none beats the base model.
func (e *Evaluator) choose(t *Trained, s *Set, meta adapt.Meta, host []model.HostTensor, k int, cand func([]int, int) group, near [][]int) ([]int, error) {
	ps := e.promptSet(s)
	bs, err := e.baseScores(ps)
	if err != nil {
		return nil, err
	}
	net, err := NewAdapterNet(e.TB, e.Wte, meta, host)
	if err != nil {
		return nil, err
	}
	defer net.Free()
	return chooseByPrompt(net, ps, k, cand, near, bs.Loss, e.Batch)
}

// chooseByPrompt returns, for each window of ps (a set scoring each
// window's prompt, promptTargets), the candidate among its near ones (of
// k; cand makes a group under one) with the lowest summed loss under net,
// scored in batches of batch windows. With base (the base model's summed
// losses), a window none of whose candidates is below it gets -1; without,
// every window gets its best candidate.
func chooseByPrompt(net *AdapterNet, ps *Set, k int, cand func([]int, int) group, near [][]int, base []float64, batch int) ([]int, error) {
	by := make([][]int, k)
	for i, nb := range near {
		for _, x := range nb {
			by[x] = append(by[x], i)
		}
	}
	n := len(ps.Windows)
	choice, best := uniform(n, -1), slices.Clone(base)
	if base == nil {
		best = make([]float64, n)
		for i := range best {
			best[i] = math.Inf(1)
		}
	}
	for x := range k {
		var gs []group
		for _, ch := range chunks(by[x], batch) {
			gs = append(gs, cand(ch, x))
		}
		sc, err := scoreGroups(net, ps, gs, 1)
		if err != nil {
			return nil, err
		}
		for _, i := range by[x] {
			if sc.Loss[i] < best[i] {
				choice[i], best[i] = x, sc.Loss[i]
			}
		}
	}
	if base == nil {
		for i, x := range choice {
			if x < 0 { // no candidate scored finite: the nearest
				choice[i] = near[i][0]
			}
		}
	}
	return choice, nil
}

// scoreGroups is every window's summed loss and scored tokens of s with
// net applying each group's updates, the head run on the scored positions
// alone.
func scoreGroups(net *AdapterNet, s *Set, gs []group, scale float32) (Scores, error) {
	out := Scores{Loss: make([]float64, len(s.Windows)), N: make([]int, len(s.Windows))}
	for _, g := range gs {
		ls, err := net.Losses(s.scoredBatch(g, scale))
		if err != nil {
			return Scores{}, err
		}
		out.add(s, g, ls, true)
	}
	return out, nil
}

// add sums a group's per-row losses ls into its windows' scores: ls holds
// a row for every position of each member or, scored, only for the
// positions with a target, in order, as Set.scoredBatch builds them.
func (out *Scores) add(s *Set, g group, ls []float32, scored bool) {
	row := 0
	for _, wi := range g.Members {
		for j, tg := range s.Targets[wi] {
			if tg < 0 {
				continue
			}
			if scored {
				out.Loss[wi] += float64(ls[row])
				row++
			} else {
				out.Loss[wi] += float64(ls[row+j])
			}
			out.N[wi]++
		}
		if !scored {
			row += len(s.Targets[wi])
		}
	}
}

// ownShare is the share of the windows of s that chose their own domain's
// expert (t an experts adapter; choice as selectByPrompt returns it), or
// -1 for other kinds.
func ownShare(t *Trained, s *Set, choice []int) float64 {
	if t.M.Kind != KindExperts || len(choice) == 0 {
		return -1
	}
	own := 0
	for i, x := range choice {
		if x >= 0 && t.Domains[x] == s.Domains[s.Dom[i]] {
			own++
		}
	}
	return float64(own) / float64(len(choice))
}

// clustering is one training epoch's k-means clustering and the order its
// windows are batched in (a mixed hyper method's).
type clustering struct {
	res  *cluster.Result
	perm []int
}

// selectedEpochs is Method.Select's reassignment: epoch e >= 1's batches
// (the clustering's order, mixed as mixedGroups makes them) with each
// window under the candidate, among its SelectNearest nearest centroids of
// that epoch's clustering, whose update (net as it stands; the centroid
// standardised as in training) best predicts the window's prompt.
func selectedEpochs(net *AdapterNet, m Method, d *Set, batch int, cs []clustering, mu, sd []float64) func(int) ([]group, error) {
	ps := promptTargets(d)
	f := d.Feature(m.Features)
	return func(e int) ([]group, error) {
		if e == 0 || len(cs) == 0 {
			return nil, nil
		}
		c := cs[min(e, len(cs)-1)] // without Recluster, one clustering serves every epoch
		res := c.res
		near, err := res.Centroids.Nearest(f, SelectNearest)
		if err != nil {
			return nil, err
		}
		cand := func(ms []int, x int) group {
			return group{Members: ms, Cluster: uniform(len(ms), 0), K: 1, Means: Standardize(res.Centroids.Row(x), mu, sd)}
		}
		choice, err := chooseByPrompt(net, ps, res.Centroids.K, cand, near, nil, batch)
		if err != nil {
			return nil, err
		}
		sel := *res
		sel.Assign = choice
		return mixedGroups(&sel, c.perm, batch, mu, sd), nil
	}
}
