package serve

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

// cachePrompts share their words: each pool's prompts predict the next.
var cachePrompts = []string{
	"red green blue red green blue red",
	"green blue red green blue green",
	"blue red green blue red blue red green",
	"red red green green blue blue red",
}

// hostMix is the cache's mixture (log p') of the log-probabilities lp.
func hostMix(lp []float64, own, pool *adapt.TokenCounts, w adapt.CacheWeights, cfg adapt.CacheConfig) []float64 {
	out := make([]float64, len(lp))
	for y := range lp {
		p := (1-w.Own-w.Pool)*math.Exp(lp[y]) + w.Own*own.Prob(int32(y), cfg)
		if pool.Total > 0 {
			p += w.Pool * pool.Prob(int32(y), cfg)
		} else {
			p += w.Pool * math.Exp(lp[y])
		}
		out[y] = math.Log(p)
	}
	return out
}

func argmax(x []float64) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// A served greedy completion with the cache (base model: one global pool)
// gives each token the host mixture of the reference backend's logits of
// its whole context, with its own tokens so far, the pool of the earlier
// requests' prompts and the weights chosen (leave-one-out) on them and its
// own prompt, as its extension reports; at some step each of "no pool", "no own counts" and
// "no cache" would have served another log-probability, so dropping any
// of them fails the test.
//
// Over 80 lines: per request, the snapshot's check, then the reference
// greedy under the host mixture and its three alternatives.
func TestCacheServedMatchesHostMixture(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	_, url := testServer(t, Base{m}, tok, Options{Slots: 2, Cache: true})
	rm := refTiny(t)
	cfg := adapt.UniformCache(m.Cfg.VocabSize)
	const n = 5
	var hist [][]int32
	var hl [][]float32
	differs := map[string]bool{}
	for i, p := range cachePrompts {
		ids := tok.Encode(p)
		r := post(context.Background(), t, url, map[string]any{"prompt": p, "max_tokens": n, "temperature": 0, "logprobs": 1})
		if r.Status != 200 {
			t.Fatalf("%q: %d %s", p, r.Status, r.Body)
		}
		c := r.C.Choices[0]
		e := c.Chameleon
		if e == nil || e.Cache == nil {
			t.Fatalf("%q: no cache in the extension: %s", p, r.Body)
		}
		sc, err := rm.Score([][]int32{ids}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		pool := &adapt.TokenCounts{}
		w, err := adapt.ChooseCacheWeights(append(hist[:len(hist):len(hist)], ids), append(hl[:len(hl):len(hl)], sc[0].Losses), true, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hist {
			pool.Add(h...)
		}
		if e.Cache.Pool != "global" || e.Cache.PoolPrompts != i || e.Cache.Own != w.Own || e.Cache.PoolWeight != w.Pool {
			t.Fatalf("%q: cache %+v, want the global pool of %d prompts with weights %+v", p, *e.Cache, i, w)
		}
		seq := append([]int32(nil), ids...)
		for step := 0; step < len(c.Logprobs.TokenLogprobs); step++ {
			lp := refLogProbs(t, rm, seq, nil)
			own := &adapt.TokenCounts{}
			own.Add(seq...)
			mix := hostMix(lp, own, pool, w, cfg)
			best := argmax(mix)
			got := float64(*c.Logprobs.TokenLogprobs[step])
			if math.Abs(got-mix[best]) > 2e-3 {
				t.Fatalf("%q token %d: served logprob %.5f, host mixture %.5f (weights %+v)", p, step, got, mix[best], w)
			}
			for name, alt := range map[string][]float64{
				"no pool": hostMix(lp, own, &adapt.TokenCounts{}, adapt.CacheWeights{Own: w.Own}, cfg),
				"no own":  hostMix(lp, &adapt.TokenCounts{}, pool, w, cfg),
				"none":    lp,
			} {
				if math.Abs(got-alt[argmax(alt)]) > 2e-3 {
					differs[name] = true
				}
			}
			if int32(best) == tok.EOT() {
				break
			}
			seq = append(seq, int32(best))
		}
		if want := string(tok.Decode(seq[len(ids):])); c.Text != want {
			t.Errorf("%q: served %q, host greedy %q", p, c.Text, want)
		}
		hist, hl = append(hist, ids), append(hl, sc[0].Losses)
	}
	for _, name := range []string{"no pool", "no own", "none"} {
		if !differs[name] {
			t.Errorf("the served log-probabilities equal the %q mixture's at every step: the test cannot tell it apart", name)
		}
	}
	if got := metricValue(t, url, "chameleon_cache_memory_prompts"); got != float64(len(cachePrompts)) {
		t.Errorf("memory prompts %g, want %d", got, len(cachePrompts))
	}
}

// cacheReq is a short greedy completion.
func cacheReq(p string) map[string]any {
	return map[string]any{"prompt": p, "max_tokens": 2, "temperature": 0}
}

// The memory keeps each pool's last CacheWindow prompts; inputs the gate
// keeps at the base model go to run-time clusters (the same prompt joins
// its cluster, another starts one), at most CacheClusters of them, the
// least recently used evicted; adapted inputs use their centroid's pool.
//
// Over 80 lines: two servers (all gated, none gated) and a table of
// requests with the pool and size each must report.
func TestCacheMemoryServed(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testHyper(t, m, 4, 7)
	gatedA := *a
	if err := gatedA.SetGate(&adapt.Gate{Radius: 1e-6}); err != nil { // every input is far from every centroid
		t.Fatal(err)
	}
	ad := newAdaptive(t, m, &gatedA, AdaptOptions{})
	s, url := testServer(t, ad, tok, Options{Slots: 2, Cache: true, CacheWindow: 2, CacheClusters: 1})
	for i, x := range []struct {
		prompt  string
		pool    string
		prompts int
		evicted float64
	}{
		{cachePrompts[0], "run-time cluster 0", 0, 0},
		{cachePrompts[0], "run-time cluster 0", 1, 0}, // the same feature: joins
		{cachePrompts[0], "run-time cluster 0", 2, 0},
		{cachePrompts[0], "run-time cluster 0", 2, 0}, // the window holds 2
		{cachePrompts[1], "run-time cluster 1", 0, 1}, // another feature: a new cluster evicts the first
		{cachePrompts[0], "run-time cluster 2", 0, 2},
	} {
		r := post(context.Background(), t, url, cacheReq(x.prompt))
		if r.Status != 200 {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
		e := r.C.Choices[0].Chameleon
		if e == nil || e.Cache == nil || e.Reason != "gate" || e.Cache.Pool != x.pool || e.Cache.PoolPrompts != x.prompts {
			t.Fatalf("request %d: extension %s, want the gate's base model, pool %q of %d prompts", i, mustJSON(e), x.pool, x.prompts)
		}
		if got := metricValue(t, url, "chameleon_cache_memory_evictions_total"); got != x.evicted {
			t.Fatalf("request %d: %g evictions, want %g", i, got, x.evicted)
		}
	}
	st := s.Scheduler().Stats()
	if st.Memory == nil || st.Memory.Clusters != 1 || st.Memory.RunClusters != 1 || st.Memory.Prompts != 1 {
		t.Fatalf("memory stats %+v", st.Memory)
	}

	// Without the gate every input has a centroid: its pool is that
	// centroid's, also with adaptation off (the nearest centroid).
	ad2 := newAdaptive(t, m, a, AdaptOptions{})
	_, url2 := testServer(t, ad2, tok, Options{Slots: 2, Cache: true})
	seen := map[string]int{}
	for _, p := range adaptPrompts {
		for _, on := range []bool{true, false} {
			body := cacheReq(p)
			body["adapt"] = on
			r := post(context.Background(), t, url2, body)
			if r.Status != 200 {
				t.Fatalf("%q: %d %s", p, r.Status, r.Body)
			}
			e := r.C.Choices[0].Chameleon
			if on && (e.Cluster == nil || e.Cache == nil || e.Cache.Pool != fmt.Sprintf("centroid %d", *e.Cluster)) {
				t.Fatalf("%q: extension %s: want its centroid's pool", p, mustJSON(e))
			}
			if e.Cache.PoolPrompts != seen[e.Cache.Pool] {
				t.Fatalf("%q adapt %v: pool %q had %d prompts, the server says %d", p, on, e.Cache.Pool, seen[e.Cache.Pool], e.Cache.PoolPrompts)
			}
			if !on && !strings.HasPrefix(e.Cache.Pool, "centroid ") {
				t.Fatalf("%q adapt false: pool %q, want its nearest centroid's", p, e.Cache.Pool)
			}
			seen[e.Cache.Pool]++
		}
	}
	if got := metricValue(t, url2, "chameleon_cache_memory_clusters"); got != float64(len(seen)) || len(seen) < 2 {
		t.Errorf("memory clusters %g, pools seen %v", got, seen)
	}
}

// cacheGated is a gated model that runs the cache through cm.
type cacheGated struct {
	*gated
	cm CacheModel
}

func (c cacheGated) PromptLosses(p [][]int32, ad []Adapter) ([][]float32, error) {
	return c.cm.PromptLosses(p, ad)
}
func (c cacheGated) MemoryKeys(p [][]int32, ad []Adapter) ([]int, [][]float32, error) {
	return c.cm.MemoryKeys(p, ad)
}
func (c cacheGated) MemoryRadius() float64 { return c.cm.MemoryRadius() }

// With the cache, a request's output does not depend on its batch: X
// served alone after H equals X served after H while Y and Z, admitted
// after it, run beside it (their pools include X; X's does not include
// them).
func TestCacheBatchInvariant(t *testing.T) { cacheBatchInvariant(t, false) }

// cacheBatchInvariant is TestCacheBatchInvariant, with the neural cache
// or without.
//
// Over 80 lines: two servers, the second with three requests released
// step by step.
func cacheBatchInvariant(t *testing.T, neural bool) {
	be := gputest.Backend(t)
	run := func(others bool) Choice {
		m, tok := tinyModel(t, be)
		g := newGated(Base{m}, false)
		var gm Model = cacheGated{g, Base{m}}
		if neural {
			gm = neuralGated{g, Base{m}}
		}
		s, url := testServer(t, gm, tok, Options{Slots: 4, Cache: true, CacheNeural: neural})
		if r := post(context.Background(), t, url, cacheReq(cachePrompts[0])); r.Status != 200 {
			t.Fatalf("H: %d %s", r.Status, r.Body)
		}
		x := map[string]any{"prompt": cachePrompts[1], "max_tokens": 8, "temperature": 0, "logprobs": 2}
		if !others {
			r := post(context.Background(), t, url, x)
			if r.Status != 200 {
				t.Fatalf("X: %d %s", r.Status, r.Body)
			}
			return r.C.Choices[0]
		}
		g.mu.Lock()
		g.gating = true
		g.mu.Unlock()
		var wg sync.WaitGroup
		rs := make([]reply, 3)
		send := func(i int, body map[string]any) {
			defer wg.Done()
			rs[i] = post(context.Background(), t, url, body)
		}
		wg.Add(1)
		go send(0, x)
		waitFor(t, 10e9, "X admitted", func() bool { return s.Scheduler().Stats().Running == 1 })
		g.allow(1) // X's prefill
		wg.Add(2)
		go send(1, map[string]any{"prompt": cachePrompts[2], "max_tokens": 8, "temperature": 0})
		go send(2, map[string]any{"prompt": cachePrompts[3], "max_tokens": 8, "temperature": 0.9, "seed": 3})
		waitFor(t, 10e9, "Y and Z queued", func() bool { st := s.Scheduler().Stats(); return st.Queued+st.Running == 3 })
		g.open()
		wg.Wait()
		for i, r := range rs {
			if r.Status != 200 {
				t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
			}
		}
		if y, z := rs[1].C.Choices[0].Chameleon.Cache, rs[2].C.Choices[0].Chameleon.Cache; y.PoolPrompts+z.PoolPrompts != 2+3 {
			t.Errorf("Y and Z saw pools of %d and %d prompts: want 2 and 3 (H, X, and one of them)", y.PoolPrompts, z.PoolPrompts)
		}
		return rs[0].C.Choices[0]
	}
	alone, batched := run(false), run(true)
	if mustJSON(alone) != mustJSON(batched) {
		t.Errorf("X alone %s, in a batch %s", mustJSON(alone), mustJSON(batched))
	}
}

// Bad cache options and models get clear errors; concurrent requests and
// metric reads share the memory safely, with the neural cache too (run
// with -race).
func TestCacheErrorsAndConcurrency(t *testing.T) {
	m := refTiny(t)
	tok := tinyTok
	for _, c := range []struct {
		m    Model
		opt  Options
		want string
	}{
		{Base{m}, Options{CacheWindow: 4}, "set Options.Cache"},
		{Base{m}, Options{Cache: true, CacheRadius: -1}, "CacheRadius"},
		{Base{m}, Options{Cache: true, CacheRadius: math.NaN()}, "CacheRadius"},
		{Base{m}, Options{Cache: true, CacheClusters: -2}, "CacheClusters"},
		{newGated(Base{m}, false), Options{Cache: true}, "cannot score prompts"},
	} {
		if _, err := New(c.m, tok, c.opt); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %q", c.opt, err, c.want)
		}
	}
	for _, neural := range []bool{false, true} {
		cacheConcurrency(t, m, neural)
	}
}

// cacheConcurrency sends concurrent requests and metric reads to a server
// with the memory (and the neural cache).
func cacheConcurrency(t *testing.T, m *model.Model, neural bool) {
	tok := tinyTok
	s, url := testServer(t, Base{m}, tok, Options{Slots: 3, Cache: true, CacheNeural: neural})
	var wg sync.WaitGroup
	const n = 6
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if r := post(context.Background(), t, url, cacheReq(cachePrompts[i%len(cachePrompts)])); r.Status != 200 {
				t.Errorf("request %d: %d %s", i, r.Status, r.Body)
			}
		}()
		go func() {
			defer wg.Done()
			get(t, url+"/metrics")
			_ = s.Scheduler().Stats()
		}()
	}
	wg.Wait()
	if st := s.Scheduler().Stats(); st.Memory == nil || st.Memory.Prompts != n {
		t.Fatalf("memory %+v, want %d prompts", st.Memory, n)
	}
	if code, body := get(t, url+"/health"); code != 200 || !strings.Contains(body, fmt.Sprintf(`"prompts":%d`, n)) {
		t.Errorf("/health: %d %s: want the memory's %d prompts", code, body, n)
	}
}

// Adaptive.PromptLosses scores a prompt through its cluster's update (the
// reference backend's Score through that centroid's plan; not the base
// model's) and one with adaptation off through the base model, and leaves
// the serving plan's slot clusters as they were.
func TestAdaptivePromptLosses(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testHyper(t, m, 4, 7)
	ad := newAdaptive(t, m, a, AdaptOptions{})
	c, err := ad.NewCache(3, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer ad.FreeCache(c)
	prompts := [][]int32{tok.Encode(adaptPrompts[0]), tok.Encode(adaptPrompts[1]), {7}}
	cl, err := ad.RT.AssignCentroids(prompts[:1])
	if err != nil {
		t.Fatal(err)
	}
	got, err := ad.PromptLosses(prompts, []Adapter{{On: true, Cluster: cl[0]}, {On: false, Cluster: -1}, {On: true, Cluster: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || len(got[2]) != 0 || len(ad.plan.Cluster) != 3 || ad.plan.Cluster[0] != -1 {
		t.Fatalf("losses %d rows (the one-token prompt's %d), plan clusters %v after", len(got), len(got[2]), ad.plan.Cluster)
	}
	rm := refTiny(t)
	rrt, err := adapt.NewRuntime(rm, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rrt.Free()
	all, err := rrt.CentroidPlan(1)
	if err != nil {
		t.Fatal(err)
	}
	defer all.Free()
	if err := all.SetClusters([]int{cl[0]}); err != nil {
		t.Fatal(err)
	}
	want, err := rm.Score(prompts[:1], nil, all.Adapter(nil))
	if err != nil {
		t.Fatal(err)
	}
	base, err := rm.Score(prompts[:2], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	moved := false
	for j, w := range want[0].Losses {
		if math.Abs(float64(got[0][j]-w)) > 2e-3 {
			t.Fatalf("adapted prompt, position %d: loss %v, reference %v", j, got[0][j], w)
		}
		moved = moved || math.Abs(float64(w-base[0].Losses[j])) > 1e-2
	}
	for j, w := range base[1].Losses {
		if math.Abs(float64(got[1][j]-w)) > 2e-3 {
			t.Fatalf("unadapted prompt, position %d: loss %v, base %v", j, got[1][j], w)
		}
	}
	if !moved {
		t.Fatal("the update does not move the prompt's losses: the test cannot tell adapted from base")
	}
}

// TestAdaptiveGroupLossesReused: for a self-checked adapter with
// hidden-state features (the shipped default's kind), online Group keeps
// the per-position losses its self-check computed, and PromptLosses takes
// them for the prompts Group assigned instead of scoring them again; they
// are what that scoring forward gives.
func TestAdaptiveGroupLossesReused(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testHyper(t, m, 4, 7)
	a.Meta.Features, a.Meta.SelfCheck = adapt.FeatureHidden, true
	ad := newAdaptive(t, m, a, AdaptOptions{})
	if ad.Mode != AdaptOnline {
		t.Fatalf("mode %v, want online", ad.Mode)
	}
	c, err := ad.NewCache(4, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer ad.FreeCache(c)
	prompts := [][]int32{tok.Encode(adaptPrompts[0]), tok.Encode(adaptPrompts[1]), tok.Encode(adaptPrompts[2]), {7}}
	cl, err := ad.Group(prompts, nil)
	if err != nil {
		t.Fatal(err)
	}
	known := ad.grouped
	if len(known) != 3 {
		t.Fatalf("Group kept losses of %d prompts, want the 3 of 2+ tokens", len(known))
	}
	ads := make([]Adapter, len(prompts))
	for i := range ads {
		ads[i] = Adapter{On: true, Cluster: cl[i]}
	}
	got, err := ad.PromptLosses(prompts, ads)
	if err != nil {
		t.Fatal(err)
	}
	if ad.grouped != nil {
		t.Error("PromptLosses left Group's losses for a later admission")
	}
	want, err := ad.scorePrompts(prompts, ads)
	if err != nil {
		t.Fatal(err)
	}
	adapted := false
	for i, p := range prompts[:3] {
		if g := known[&p[0]]; len(got[i]) == 0 || &got[i][0] != &g.losses[0] {
			t.Errorf("prompt %d: PromptLosses scored it again instead of taking Group's losses", i)
		}
		adapted = adapted || cl[i] >= 0
		for j, w := range want[i] {
			if math.Abs(float64(got[i][j]-w)) > 1e-4*math.Max(1, float64(w)) {
				t.Fatalf("prompt %d (cluster %d) position %d: Group's loss %v, the scoring forward's %v", i, cl[i], j, got[i][j], w)
			}
		}
	}
	if len(got[3]) != 0 {
		t.Errorf("the one-token prompt has %d losses", len(got[3]))
	}
	if !adapted {
		t.Log("the self-check kept every prompt at the base model: only base losses were compared")
	}
	// A prompt Group did not see (or under another cluster) is scored.
	ads[0].Cluster = (cl[0] + 1) % 4
	ad.grouped = known
	again, err := ad.PromptLosses(prompts[:1], ads[:1])
	if err != nil {
		t.Fatal(err)
	}
	if &again[0][0] == &known[&prompts[0][0]].losses[0] {
		t.Error("a prompt under another cluster took Group's losses")
	}
}

// TestCacheOptOut: on a server with the memory, a request with "cache":
// false is served without the cache (each greedy token the base model's
// own log-probability, though the memory holds pools it would mix in) and
// its prompt joins no pool; "cache": true on a server without the memory
// is a 400 naming the field.
func TestCacheOptOut(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	_, url := testServer(t, Base{m}, tok, Options{Slots: 2, Cache: true})
	rm := refTiny(t)
	for _, p := range cachePrompts[:2] { // the memory now holds two prompts
		if r := post(context.Background(), t, url, cacheReq(p)); r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	p := cachePrompts[2]
	body := map[string]any{"prompt": p, "max_tokens": 5, "temperature": 0, "logprobs": 1, "cache": false}
	r := post(context.Background(), t, url, body)
	if r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	c := r.C.Choices[0]
	if c.Chameleon != nil && c.Chameleon.Cache != nil {
		t.Errorf("an opted-out request reports a cache: %s", mustJSON(c.Chameleon))
	}
	seq := tok.Encode(p)
	for step, got := range c.Logprobs.TokenLogprobs {
		lp := refLogProbs(t, rm, seq, nil)
		best := argmax(lp)
		if math.Abs(float64(*got)-lp[best]) > 2e-3 {
			t.Fatalf("token %d: served logprob %.5f, the base model's %.5f", step, *got, lp[best])
		}
		seq = append(seq, int32(best))
	}
	if got := metricValue(t, url, "chameleon_cache_memory_prompts"); got != 2 {
		t.Errorf("memory prompts %g after the opted-out request, want 2", got)
	}
	// The same request in the memory: it is mixed (else the check above
	// could not tell the opt-out from a cache that does nothing here).
	delete(body, "cache")
	r2 := post(context.Background(), t, url, body)
	if r2.Status != 200 || r2.C.Choices[0].Chameleon == nil || r2.C.Choices[0].Chameleon.Cache == nil {
		t.Fatalf("%d %s", r2.Status, r2.Body)
	}
	if w := r2.C.Choices[0].Chameleon.Cache; w.Own+w.PoolWeight == 0 {
		t.Errorf("the request in the memory got zero weights (%+v): the opt-out check shows nothing", *w)
	}

	_, plain := testServer(t, Base{m}, tok, Options{Slots: 1})
	bad := post(context.Background(), t, plain, map[string]any{"prompt": p, "max_tokens": 2, "cache": true})
	if bad.Status != 400 || !strings.Contains(string(bad.Body), "cache_unavailable") {
		t.Errorf("cache: true without the memory: %d %s", bad.Status, bad.Body)
	}
	if ok := post(context.Background(), t, plain, map[string]any{"prompt": p, "max_tokens": 2, "cache": false}); ok.Status != 200 {
		t.Errorf("cache: false without the memory: %d %s", ok.Status, ok.Body)
	}
}
