package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/model"
)

// Perplexity is r.M's sliding-window perplexity of tokens
// (model.PerplexityWith with o) with every window adapted: the windows are
// grouped as a whole (po: k-means on their features, or the adapter's
// training centroids in ModeOnline) and each is scored with its own
// cluster's update. A window's feature covers all of its tokens, the
// scored ones included, as when a batch is clustered in the paper. It also
// returns the number of clusters of the plan. o.Adapters is replaced.
func (r *Runtime) Perplexity(tokens []int32, o model.PerplexityOptions, po PlanOptions) (model.PerplexityResult, int, error) {
	wins := model.PerplexityWindows(tokens, o.Context, o.Stride)
	if wins == nil {
		return model.PerplexityResult{}, 0, fmt.Errorf("nothing to score: %d tokens, context %d, stride %d", len(tokens), o.Context, o.Stride)
	}
	plan, err := r.Plan(wins, po)
	if err != nil {
		return model.PerplexityResult{}, 0, err
	}
	defer plan.Free()
	o.Adapters = func(first int, _ [][]int32) (model.Adapter, func(), error) {
		return plan.AdapterFrom(first, nil), nil, nil
	}
	res, err := r.M.PerplexityWith(tokens, o)
	return res, plan.K, err
}
