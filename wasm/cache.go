//go:build js

package main

import (
	"syscall/js"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/model"
)

// cacheAdapter turns on the plan's token cache over the prompts (pools of
// at most adapt.DefaultBatchSize by the plan's features, a uniform prior:
// what chameleon generate --cache runs) and returns its adapter.
func cacheAdapter(p *adapt.Plan, ids [][]int32) (model.Adapter, error) {
	if err := p.EnableCache(ids, adapt.UniformCache(state.m.Cfg.VocabSize), adapt.DefaultBatchSize); err != nil {
		return nil, err
	}
	return p.CacheAdapter(nil)
}

// cacheJS is the token cache's per-prompt pool and weights: {pool, own,
// poolWeight}, arrays over the prompts.
func cacheJS(p *adapt.Plan, n int) js.Value {
	pool, own, pw := make([]any, n), make([]any, n), make([]any, n)
	for i := range n {
		g, w, _ := p.CacheWeightsOf(i)
		pool[i], own[i], pw[i] = g, w.Own, w.Pool
	}
	return js.ValueOf(map[string]any{"pool": pool, "own": own, "poolWeight": pw})
}
