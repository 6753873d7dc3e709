package adaptrun

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/train"
)

// Methods are the methods `adapt bench` and `adapt train` know by name:
// rank r, features f (what the experts route by, the table clusters on and
// a LoRA's gate reads), nAdapt adaptation domains (the table's k) and the
// parameter-matched LoRA's rank fill them in.
func Methods(r int, f string, nAdapt int, matchedRank int) map[string]Method {
	return map[string]Method{
		// Features give a LoRA the gate's centroids: its gated rows are the
		// control for the hyper-network's gated online rows.
		"lora":         {Name: fmt.Sprintf("LoRA r=%d", r), Kind: KindLoRA, Rank: r, Features: f},
		"lora-matched": {Name: fmt.Sprintf("LoRA r=%d (parameter-matched)", matchedRank), Kind: KindLoRA, Rank: matchedRank, Features: f},
		"experts":      {Name: fmt.Sprintf("domain experts r=%d", r), Kind: KindExperts, Rank: r, Features: f},
		"table":        {Name: fmt.Sprintf("per-cluster LoRA table, k=%d, r=%d", nAdapt, r), Kind: KindTable, Rank: r, Features: f, K: nAdapt},
		"hyper-paper": {Name: "ChamaleonLLM (paper: embeddings, dropout 0.5)", Kind: KindHyper, Rank: r, Features: adapt.FeatureEmbed,
			Hidden: []int{64, 32}, Dropout: 0.5},
		"hyper-embed": {Name: "ChamaleonLLM+ (embeddings)", Kind: KindHyper, Rank: r, Features: adapt.FeatureEmbed,
			Hidden: []int{64, 32}, Recluster: true},
		"hyper-hidden": {Name: "ChamaleonLLM+ (hidden states)", Kind: KindHyper, Rank: r, Features: adapt.FeatureHidden,
			Hidden: []int{64, 32}, Recluster: true},
		"hyper-both": {Name: "ChamaleonLLM+ (embeddings + hidden states)", Kind: KindHyper, Rank: r, Features: adapt.FeatureBoth,
			Hidden: []int{64, 32}, Recluster: true},
		// A static pair of rank 128 for the shift every adaptation domain
		// shares plus the generated per-cluster update, trained jointly;
		// the narrower second hidden layer keeps the total at the
		// parameter-matched LoRA's (C=256, V=4096, r=8: 557,056 + 609,360 =
		// 1,166,416 against hyper-hidden's 1,167,456).
		"hyper-hybrid": {Name: "ChamaleonLLM+ hybrid (static r=128 + generated, hidden states)", Kind: KindHyper, Rank: r,
			Features: adapt.FeatureHidden, Hidden: []int{64, 16}, Recluster: true, StaticRank: 128},
		// Nearly all of the budget in the static pair (rank 232 of the
		// output projection's 256) and a generated rank-2 update per cluster
		// on top: 1,009,664 + 165,456 = 1,175,120 parameters (C=256, V=4096)
		// against the matched LoRA's 1,183,744. If per-cluster
		// specialisation pays at all on top of a near-full-rank shared
		// update, this is where it shows against the matched LoRA.
		"hyper-hybrid-full": {Name: "ChamaleonLLM+ hybrid (static r=232 + generated r=2, hidden states)", Kind: KindHyper, Rank: 2,
			Features: adapt.FeatureHidden, Hidden: []int{64, 16}, Recluster: true, StaticRank: 232},
		// The gated basis: a static pair of nearly the matched LoRA's rank
		// (8 ranks fewer leave room for the gate network) whose components
		// each cluster weighs by generated gates, trained on batches that
		// mix clusters. At zero gates it is that LoRA; what the gates add
		// over it is what the clustering buys.
		"hyper-basis": {Name: fmt.Sprintf("ChamaleonLLM gated basis (r=%d, generated gates, hidden states)", max(1, matchedRank-8)),
			Kind: KindHyper, Rank: max(1, matchedRank-8), Features: adapt.FeatureHidden, Hidden: []int{64, 16}, Recluster: true,
			Basis: true, Mixed: true},
		// The same gated basis trained in two stages: its pair as a LoRA
		// (every gate at zero), then the gate network alone on the frozen
		// pair, so that the gates start from a trained LoRA rather than
		// shaping the pair as they learn.
		"hyper-basis-staged": {Name: fmt.Sprintf("ChamaleonLLM gated basis, staged (r=%d: a LoRA, then generated gates on it)", max(1, matchedRank-8)),
			Kind: KindHyper, Rank: max(1, matchedRank-8), Features: adapt.FeatureHidden, Hidden: []int{64, 16}, Recluster: true,
			Basis: true, Mixed: true, Staged: true},
		// Updates inside the decoder (the frozen base runs forward and
		// backward every step).
		"lora-qkv": {Name: fmt.Sprintf("LoRA r=%d in qkv + head", r), Kind: KindLoRA, Rank: r, Features: f, Deep: []string{train.SiteQKV}},
		"hyper-v3": {Name: "ChamaleonLLM v3 (static LoRA in qkv, generated head)", Kind: KindHyper, Rank: r, Features: f,
			Hidden: []int{64, 32}, Recluster: true, Deep: []string{train.SiteQKV}, DeepStatic: true},
		"hyper-qkv": {Name: "ChamaleonLLM+ generated in qkv + head", Kind: KindHyper, Rank: r, Features: f,
			Hidden: []int{64, 32}, Recluster: true, Deep: []string{train.SiteQKV}},
		"hyper-all": {Name: "ChamaleonLLM+ generated in qkv, proj, fc, fc2 + head", Kind: KindHyper, Rank: r, Features: f,
			Hidden: []int{64, 32}, Recluster: true, Deep: []string{train.SiteQKV, train.SiteProj, train.SiteFC, train.SiteFC2}},
	}
}

// MatchedRank is the rank of a LoRA of the output projection (C x V) with
// as many parameters as the hyper method pm for one cluster: the
// parameter-matched LoRA's rank (272 for the head-only hyper-network at
// C=256, V=4096, r=8).
func MatchedRank(pm Method, c, v int) int {
	return max(1, int(math.Round(float64(pm.Params(c, v, 1))/float64(c+v))))
}

// MatchedMethods is Methods with the parameter-matched LoRA matched to
// the head-only hyper-network of the same rank and features, as `adapt
// bench` and `adapt train` both mean it. A budget above zero sets the
// matched rank instead: the parameter budget, in ranks of a LoRA of the
// output projection, that lora-matched spends whole and hyper-basis
// spends on its pair (8 ranks fewer) and its gate network; a budget also
// adds hyper-basis-fit, the basis with the largest pair that fits, and
// hyper-basis-drop, the same trained with gate dropout (Method.GateDrop),
// and hyper-basis-warm, the same warm-started from its pair trained as a
// LoRA (Method.Warm), and hyper-basis-select, the same trained under the
// updates the windows' prompts choose (Method.Select).
func MatchedMethods(r int, f string, nAdapt, c, v, budget int) map[string]Method {
	if budget > 0 {
		ms := Methods(r, f, nAdapt, budget)
		// hyper-basis keeps 8 ranks for its gate network, more than the
		// network takes: hyper-basis-fit spends the budget whole, on the
		// largest pair the same network leaves room for.
		fit := ms["hyper-basis"]
		for fit.Rank = budget; fit.Rank > 1 && fit.Params(c, v, 1) > budget*(c+v); fit.Rank-- {
		}
		fit.Name = fmt.Sprintf("ChamaleonLLM gated basis (r=%d, the budget whole, generated gates, hidden states)", fit.Rank)
		ms["hyper-basis-fit"] = fit
		ms["hyper-basis-drop"] = fit.WithGateDrop(0.5)
		warm := fit
		warm.Warm = true
		warm.Name = fmt.Sprintf("ChamaleonLLM gated basis, warm-started (r=%d, the budget whole: a LoRA, then it and generated gates together)", fit.Rank)
		ms["hyper-basis-warm"] = warm
		sel := fit
		sel.Select = true
		sel.Name = fmt.Sprintf("ChamaleonLLM gated basis, trained by selection (r=%d, the budget whole: each window trains under the update its prompt chooses)", fit.Rank)
		ms["hyper-basis-select"] = sel
		return ms
	}
	return Methods(r, f, nAdapt, MatchedRank(Methods(r, f, nAdapt, 1)["hyper-both"], c, v))
}

// WithGateDrop is m, a gated basis with the whole budget, trained with
// gate dropout p (Method.GateDrop) and named for it.
func (m Method) WithGateDrop(p float64) Method {
	m.GateDrop = p
	m.Name = fmt.Sprintf("ChamaleonLLM gated basis (r=%d, the budget whole, gate dropout %g, hidden states)", m.Rank, p)
	return m
}

// MethodNames lists Methods' names for help texts and errors.
var MethodNames = "lora, lora-matched, experts, table, hyper-paper, hyper-embed, hyper-hidden, hyper-both, hyper-hybrid, hyper-hybrid-full, hyper-basis, hyper-basis-fit, hyper-basis-drop, hyper-basis-warm and hyper-basis-select (with --budget), hyper-basis-staged, lora-qkv, hyper-v3, hyper-qkv, hyper-all"

// CheckGateDecay refuses a gate decay that is negative, not finite, or set
// on a method that is not a gated basis.
func (m Method) CheckGateDecay() error {
	if m.GateDecay != 0 && (!m.Basis || !(m.GateDecay > 0) || math.IsInf(m.GateDecay, 0)) {
		return fmt.Errorf("adaptrun: %s: gate decay %g: want a finite decay >= 0 for a gated basis", m.Name, m.GateDecay)
	}
	return nil
}
