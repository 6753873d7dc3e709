package serve

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// adaptPrompts are assigned to several of testHyper(…, 4, 7)'s centroids
// (TestAdaptedLogitsMatchReference checks that they are).
var adaptPrompts = []string{
	"The quick brown fox",
	"def fibonacci(n):",
	"Q: What is the capital of France?\nA:",
	"Once upon a time",
}

// checkLogprobs compares a served first token's logprobs with a reference
// log-softmax: the sampled (greedy) token's and every top value.
func checkLogprobs(t *testing.T, what string, c Choice, want []float64) {
	t.Helper()
	const tol = 2e-3
	if c.Logprobs == nil || len(c.Logprobs.TokenLogprobs) == 0 || c.Logprobs.TokenLogprobs[0] == nil {
		t.Fatalf("%s: no logprobs: %+v", what, c)
	}
	top := topValues(want, 5)
	if got := float64(*c.Logprobs.TokenLogprobs[0]); math.Abs(got-top[0]) > tol {
		t.Errorf("%s: greedy token's logprob %.5f, reference %.5f", what, got, top[0])
	}
	var got []float64
	for _, v := range c.Logprobs.TopLogprobs[0] {
		got = append(got, float64(v))
	}
	slices.Sort(got)
	slices.Reverse(got)
	for i, v := range got { // keys that collapse (partial UTF-8) drop a value: match each to the nearest
		j := slices.IndexFunc(top, func(w float64) bool { return math.Abs(w-v) <= tol })
		if j < 0 {
			t.Errorf("%s: top logprob %d is %.5f, not among the reference's %v", what, i, v, top)
		}
	}
}

// far reports whether the served first token's top logprobs are far
// (> 0.01) from a reference's: the reference is not what was served.
func far(c Choice, lp []float64) bool {
	var got []float64
	for _, v := range c.Logprobs.TopLogprobs[0] {
		got = append(got, float64(v))
	}
	slices.Sort(got)
	slices.Reverse(got)
	want := topValues(lp, len(got))
	var d float64
	for i := range got {
		d = max(d, math.Abs(got[i]-want[i]))
	}
	return d > 0.01
}

// An adapted request's logits, served on WebGPU, equal the reference
// backend's forward through its nearest centroid's update (and differ
// from the base model's and from every other centroid's); with "adapt":
// false they equal the base model's.
func TestAdaptedLogitsMatchReference(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	const k = 4
	a := testHyper(t, m, k, 7)
	ad := newAdaptive(t, m, a, AdaptOptions{})
	if ad.Mode != AdaptOnline || ad.K() != k {
		t.Fatalf("mode %q with %d clusters, want online with %d", ad.Mode, ad.K(), k)
	}
	_, url := testServer(t, ad, tok, Options{Slots: 3})

	rm := refTiny(t)
	rrt, err := adapt.NewRuntime(rm, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rrt.Free()
	seen := map[int]bool{}
	for _, p := range adaptPrompts {
		ids := tok.Encode(p)
		plan, err := rrt.Plan([][]int32{ids}, adapt.PlanOptions{Mode: adapt.ModeOnline}) // its own features and assignment
		if err != nil {
			t.Fatal(err)
		}
		cl := plan.Cluster[0]
		seen[cl] = true
		want := refLogProbs(t, rm, ids, func() model.Adapter { return plan.Adapter(nil) })
		base := refLogProbs(t, rm, ids, nil)
		all, err := rrt.CentroidPlan(1)
		if err != nil {
			t.Fatal(err)
		}
		r := post(context.Background(), t, url, map[string]any{"prompt": p, "max_tokens": 1, "temperature": 0, "logprobs": 5})
		if r.Status != 200 {
			t.Fatalf("%q: %d %s", p, r.Status, r.Body)
		}
		checkLogprobs(t, fmt.Sprintf("%q (cluster %d)", p, cl), r.C.Choices[0], want)
		if !far(r.C.Choices[0], base) {
			t.Errorf("%q: the adapted logprob equals the base model's: the update has no effect", p)
		}
		for o := 0; o < k; o++ {
			if err := all.SetClusters([]int{o}); err != nil {
				t.Fatal(err)
			}
			if o != cl && !far(r.C.Choices[0], refLogProbs(t, rm, ids, func() model.Adapter { return all.Adapter(nil) })) {
				t.Errorf("%q: served logprob also matches centroid %d's update, not only its own %d's", p, o, cl)
			}
		}
		all.Free()
		plan.Free()

		r = post(context.Background(), t, url, map[string]any{"prompt": p, "max_tokens": 1, "temperature": 0, "logprobs": 5, "adapt": false})
		if r.Status != 200 {
			t.Fatalf("%q adapt false: %d %s", p, r.Status, r.Body)
		}
		checkLogprobs(t, fmt.Sprintf("%q (adapt false)", p), r.C.Choices[0], base)
	}
	if len(seen) < 2 {
		t.Fatalf("the prompts all went to one centroid %v: pick others", seen)
	}
}

// An adapter that also updates the decoder's layers (generated updates of
// qkv and fc2 at every layer): a served greedy completion, prefill and
// decode steps through the KV cache that holds adapted keys and values,
// gives each token the log-probability that the reference backend's whole
// forward over prompt and completion gives, through the prompt's cluster's
// updates; its first token's differs from the head-only update's.
func TestDeepAdaptedServingMatchesReference(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testHyper(t, m, 4, 7, model.SiteQKV, model.SiteFC2)
	ad := newAdaptive(t, m, a, AdaptOptions{})
	_, url := testServer(t, ad, tok, Options{Slots: 2})
	rm := refTiny(t)
	rrt, err := adapt.NewRuntime(rm, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rrt.Free()
	head := *a
	head.Meta.Sites = nil
	head.Tensors = head.Meta.Spec()
	for i := range head.Tensors {
		j := slices.IndexFunc(a.Tensors, func(x model.HostTensor) bool { return x.Name == head.Tensors[i].Name })
		head.Tensors[i].Data = a.Tensors[j].Data
	}
	hrt, err := adapt.NewRuntime(rm, &head)
	if err != nil {
		t.Fatal(err)
	}
	defer hrt.Free()
	const n = 4
	for _, p := range adaptPrompts[:2] {
		ids := tok.Encode(p)
		plan, err := rrt.Plan([][]int32{ids}, adapt.PlanOptions{Mode: adapt.ModeOnline})
		if err != nil {
			t.Fatal(err)
		}
		r := post(context.Background(), t, url, map[string]any{"prompt": p, "max_tokens": n, "temperature": 0, "logprobs": 1})
		if r.Status != 200 {
			t.Fatalf("%q: %d %s", p, r.Status, r.Body)
		}
		c := r.C.Choices[0]
		// The reference: greedy, one whole forward per token.
		seq := slices.Clone(ids)
		for i := 0; i < n; i++ {
			lp := refLogProbs(t, rm, seq, func() model.Adapter { return plan.Adapter(nil) })
			best := 0
			for v := range lp {
				if lp[v] > lp[best] {
					best = v
				}
			}
			if i >= len(c.Logprobs.TokenLogprobs) || c.Logprobs.TokenLogprobs[i] == nil {
				t.Fatalf("%q: token %d has no logprob: %+v", p, i, c.Logprobs)
			}
			if got := float64(*c.Logprobs.TokenLogprobs[i]); math.Abs(got-lp[best]) > 2e-3 {
				t.Errorf("%q token %d: served logprob %.5f, reference %.5f", p, i, got, lp[best])
			}
			if i == 0 {
				hp, err := hrt.Plan([][]int32{ids}, adapt.PlanOptions{Mode: adapt.ModeOnline})
				if err != nil {
					t.Fatal(err)
				}
				if !far(c, refLogProbs(t, rm, ids, func() model.Adapter { return hp.Adapter(nil) })) {
					t.Errorf("%q: the decoder updates have no effect", p)
				}
				hp.Free()
			}
			seq = append(seq, int32(best))
		}
		if want := string(tok.Decode(seq[len(ids):])); c.Text != want {
			t.Errorf("%q: served %q, reference greedy %q", p, c.Text, want)
		}
		plan.Free()
	}
}

// A static LoRA adapter: every adapted request gets its one pair.
func TestAdaptedLoRAMatchesReference(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testLoRA(t, m, 5)
	ad := newAdaptive(t, m, a, AdaptOptions{})
	if ad.Mode != AdaptStatic {
		t.Fatalf("mode %q, want static", ad.Mode)
	}
	_, url := testServer(t, ad, tok, Options{Slots: 2})
	rm := refTiny(t)
	rrt, err := adapt.NewRuntime(rm, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rrt.Free()
	p := adaptPrompts[1]
	ids := tok.Encode(p)
	plan, err := rrt.PlanMeans(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.SetClusters([]int{0}); err != nil {
		t.Fatal(err)
	}
	want := refLogProbs(t, rm, ids, func() model.Adapter { return plan.Adapter(nil) })
	r := post(context.Background(), t, url, map[string]any{"prompt": p, "max_tokens": 1, "temperature": 0, "logprobs": 5})
	if r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	checkLogprobs(t, "lora", r.C.Choices[0], want)
	if !far(r.C.Choices[0], refLogProbs(t, rm, ids, nil)) {
		t.Errorf("the lora update has no effect")
	}
}

// At the model level, rows with adaptation off get exactly (bit for bit)
// the base model's logits, whatever the other rows do, with f32 and f16
// weights (the server's default); adapted rows do not depend on their
// neighbours either.
func TestAdaptiveOffRowsExact(t *testing.T) {
	for _, c := range []struct {
		be gpu.Backend
		dt gpu.DType
	}{{gputest.Backend(t), gpu.F32}, {gputest.Backend(t), gpu.F16}, {ref.New(), gpu.F32}} {
		be := c.be
		t.Run(fmt.Sprintf("%s-%v", strings.Fields(be.Name())[0], c.dt), func(t *testing.T) {
			m, tok := tinyModel(t, be)
			if c.dt != gpu.F32 {
				w, err := model.Upload(be, m.Cfg, tinyHost, c.dt)
				if err != nil {
					t.Fatal(err)
				}
				m = &model.Model{Cfg: m.Cfg, W: w, B: be}
			}
			ad := newAdaptive(t, m, testHyper(t, m, 4, 7), AdaptOptions{})
			const slots = 4
			var prompts [][]int32
			for _, p := range adaptPrompts {
				prompts = append(prompts, tok.Encode(p))
			}
			cl, err := ad.Group(prompts, nil)
			if err != nil {
				t.Fatal(err)
			}
			run := func(md Model, ads []Adapter) [][]float32 {
				c, err := md.NewCache(slots, 32)
				if err != nil {
					t.Fatal(err)
				}
				defer md.FreeCache(c)
				lt, err := md.ForwardLast(c, prompts, ads)
				if err != nil {
					t.Fatal(err)
				}
				defer be.Free(lt)
				x, err := be.ReadF32(lt)
				if err != nil {
					t.Fatal(err)
				}
				v := m.Cfg.VocabSize
				out := make([][]float32, slots)
				for b := range out {
					out[b] = x[b*v : (b+1)*v]
				}
				return out
			}
			off := make([]Adapter, slots)
			base := run(Base{m}, off)
			allOff := run(ad, off)
			mixed := make([]Adapter, slots)
			onlyOne := make([]Adapter, slots)
			for b := range mixed {
				mixed[b] = Adapter{On: b%2 == 0, Cluster: cl[b]}
			}
			onlyOne[2] = mixed[2]
			mix := run(ad, mixed)
			one := run(ad, onlyOne)
			for b := 0; b < slots; b++ {
				if !slices.Equal(allOff[b], base[b]) {
					t.Errorf("slot %d, adaptation off everywhere: logits differ from the base model's", b)
				}
				if b%2 == 1 && !slices.Equal(mix[b], base[b]) {
					t.Errorf("slot %d, off among adapted rows: logits differ from the base model's", b)
				}
				if b%2 == 0 && slices.Equal(mix[b], base[b]) {
					t.Errorf("slot %d, adapted: logits equal the base model's", b)
				}
			}
			if !slices.Equal(one[2], mix[2]) {
				t.Errorf("slot 2's adapted logits depend on the other rows")
			}
		})
	}
}

// metricValue reads one sample of the Prometheus text at url/metrics.
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	_, body := get(t, url+"/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("metric %s not found", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// adaptReq is request i of the mixed batch: greedy or seeded, adapted or
// not, some with two choices.
func adaptReq(i int) map[string]any {
	body := map[string]any{"prompt": adaptPrompts[i%len(adaptPrompts)], "max_tokens": 5, "temperature": 0, "logprobs": 1}
	if i%3 == 2 {
		body["adapt"] = false
	}
	if i%4 == 3 {
		body["temperature"], body["seed"], body["n"] = 0.9, i, 2
	}
	return body
}

// runMixed serves requests 0..n-1 one at a time, then all at once held at
// the gate until they are queued, so that they are admitted together (one
// window, several clusters and unadapted sequences in one batch); every
// output (text and logprobs) must equal the one served alone.
func runMixed(t *testing.T, md Model, slots, n int) (url string) {
	g := newGated(md, false)
	s, url := testServer(t, g, tinyTok, Options{Slots: slots})
	alone := make([]string, n)
	for i := range alone {
		r := post(context.Background(), t, url, adaptReq(i))
		if r.Status != 200 {
			t.Fatalf("alone %v: %d %s", adaptReq(i), r.Status, r.Body)
		}
		alone[i] = mustJSON(withoutCluster(r.C.Choices))
	}
	g.mu.Lock()
	g.gating, g.permits = true, 0
	g.mu.Unlock()
	defer g.open() // a failed wait must not leave the scheduler stuck at the gate
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := post(context.Background(), t, url, adaptReq(i))
			if r.Status != 200 {
				t.Errorf("batched %v: %d %s", adaptReq(i), r.Status, r.Body)
			}
			got[i] = mustJSON(withoutCluster(r.C.Choices))
		}()
	}
	// The first request(s) may take slots and wait at the gate; the others queue.
	waitFor(t, 30*time.Second, "the requests to queue", func() bool {
		st := s.Scheduler().Stats()
		return st.Queued+st.Running >= n
	})
	g.open()
	wg.Wait()
	for i := range got {
		if got[i] != alone[i] {
			t.Errorf("request %v batched:\n got %s\nwant %s (alone)", adaptReq(i), got[i], alone[i])
		}
	}
	return url
}

// Adapted greedy and seeded outputs served concurrently, in a batch that
// mixes several centroids' clusters with unadapted sequences, equal the
// same requests served alone; unadapted ones equal the base model's.
func TestAdaptedBatchEqualsAlone(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	ad := newAdaptive(t, m, testHyper(t, m, 4, 7), AdaptOptions{})
	const n = 6 // 8 sequences: n=2 for request 3
	url := runMixed(t, ad, 8, n)
	if c, le2 := metricValue(t, url, "chameleon_step_clusters_count"), metricValue(t, url, `chameleon_step_clusters_bucket{le="2"}`); c-le2 < 1 {
		t.Errorf("no step ran 3 or more adaptations (%g steps, %g with at most 2)", c, le2)
	}
	if a, b := metricValue(t, url, `chameleon_sequences_total{adaptation="adapted"}`), metricValue(t, url, `chameleon_sequences_total{adaptation="base"}`); a != 2*5 || b != 2*2 {
		t.Errorf("sequences: %g adapted, %g base; want 10 and 4", a, b)
	}

	// Unadapted requests equal the base model's, logprobs included.
	mb, _ := tinyModel(t, be)
	_, burl := testServer(t, Base{mb}, tok, Options{Slots: 8})
	for i := 0; i < n; i++ {
		if body := adaptReq(i); body["adapt"] == false {
			delete(body, "adapt")
			r := post(context.Background(), t, burl, body)
			body["adapt"] = false
			ra := post(context.Background(), t, url, body)
			if r.Status != 200 || ra.Status != 200 || mustJSON(withoutExt(r.C.Choices)) != mustJSON(withoutExt(ra.C.Choices)) {
				t.Errorf("%v: adaptive server %s, base server %s", body, mustJSON(ra.C.Choices), mustJSON(r.C.Choices))
			}
			for _, c := range ra.C.Choices {
				if e := c.Chameleon; e == nil || e.Adapted || e.Reason != "request" {
					t.Errorf(`"adapt": false: extension %+v, want not adapted for reason "request"`, e)
				}
			}
		}
	}
}

// Window mode: each admission window is clustered by k-means and each
// cluster's mean goes through the hyper-network. With one sequence per
// cluster a sequence's update depends only on its own prompt, so batched
// outputs equal those served alone (this also checks that rebuilding the
// factor pool for a new window leaves the rows in use unchanged), and a
// request's logits equal the reference for its own feature.
func TestAdaptWindow(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testHyper(t, m, 0, 7) // no centroids: window mode by default
	ad := newAdaptive(t, m, a, AdaptOptions{ClusterSize: 1})
	if ad.Mode != AdaptWindow {
		t.Fatalf("mode %q, want window", ad.Mode)
	}
	url := runMixed(t, ad, 8, 6)

	rm := refTiny(t)
	rrt, err := adapt.NewRuntime(rm, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rrt.Free()
	ids := tok.Encode(adaptPrompts[3])
	plan, err := rrt.Plan([][]int32{ids}, adapt.PlanOptions{Mode: adapt.ModeBatch})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Free()
	r := post(context.Background(), t, url, map[string]any{"prompt": adaptPrompts[3], "max_tokens": 1, "temperature": 0, "logprobs": 5})
	if r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	checkLogprobs(t, "window of one", r.C.Choices[0], refLogProbs(t, rm, ids, func() model.Adapter { return plan.Adapter(nil) }))
	if !far(r.C.Choices[0], refLogProbs(t, rm, ids, nil)) {
		t.Errorf("the window's update has no effect")
	}
}

// Window mode with two sequences per cluster: four adapted prompts that
// arrive within Options.AdaptWindow are admitted together and make two
// clusters, each with its generated update, in one batch beside
// unadapted sequences.
func TestAdaptWindowClusters(t *testing.T) {
	be := ref.New()
	m, tok := tinyModel(t, be)
	ad := newAdaptive(t, m, testHyper(t, m, 0, 9), AdaptOptions{ClusterSize: 2, Mode: AdaptWindow})
	_, url := testServer(t, ad, tok, Options{Slots: 6, AdaptWindow: 2 * time.Second})
	t0 := time.Now()
	var wg sync.WaitGroup
	send := func(i int, p string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := map[string]any{"prompt": p, "max_tokens": 2, "temperature": 0, "adapt": i < 4}
			if r := post(context.Background(), t, url, body); r.Status != 200 {
				t.Errorf("%v: %d %s", body, r.Status, r.Body)
			}
		}()
	}
	// The adapted requests first, all inside one window; the unadapted ones
	// only once those are queued, so that they wait behind the window and
	// share its steps (sent together, an unadapted request that happens to
	// arrive first would finish before the window closes).
	for i, p := range adaptPrompts[:4] {
		send(i, p)
	}
	for deadline := time.Now().Add(time.Second); metricValue(t, url, "chameleon_queue_depth") < 4 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	for i, p := range adaptPrompts[:2] {
		send(4+i, p)
	}
	wg.Wait()
	if el := time.Since(t0); el < 2*time.Second {
		t.Errorf("adapted requests served in %v, before their 2 s window closed", el)
	}
	// Steps see 2 clusters + the unadapted sequences = 3 adaptations.
	if c, le2 := metricValue(t, url, "chameleon_step_clusters_count"), metricValue(t, url, `chameleon_step_clusters_bucket{le="2"}`); c-le2 < 1 {
		t.Errorf("no step ran 2 window clusters beside unadapted sequences (%g steps, %g with at most 2 adaptations)", c, le2)
	}
	if v := metricValue(t, url, "chameleon_adapt_group_seconds_count"); v != 1 {
		t.Errorf("%g groupings, want 1 window", v)
	}
}

// An adapter made for another model is refused at start, naming the
// difference; so are adapters and modes the server cannot run.
func TestAdapterRefused(t *testing.T) {
	be := ref.New()
	m, _ := tinyModel(t, be)
	other := model.Configs["tiny"]
	w, err := model.Upload(be, other, model.RandomInit(other, 4), gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	mo := &model.Model{Cfg: other, W: w, B: be}
	a := testHyper(t, mo, 2, 1) // for the other model
	if _, err := NewAdaptive(m, a, AdaptOptions{}); err == nil || !strings.Contains(err.Error(), "wte fingerprint") {
		t.Errorf("adapter of another model: %v", err)
	}
	base, _ := adapt.BaseOfModel(m)
	small := a.Meta
	small.Base.Config.NEmbd = 64
	small.Base.Config.NHead = 2
	if err := small.Base.Match(base); err == nil || !strings.Contains(err.Error(), "n_embd") {
		t.Errorf("a smaller model's adapter: %v", err)
	}
	noCent := testHyper(t, m, 0, 1)
	if _, err := NewAdaptive(m, noCent, AdaptOptions{Mode: AdaptOnline}); err == nil || !strings.Contains(err.Error(), "centroids") {
		t.Errorf("online mode without centroids: %v", err)
	}
	if _, err := NewAdaptive(m, testLoRA(t, m, 1), AdaptOptions{Mode: AdaptWindow}); err == nil || !strings.Contains(err.Error(), "lora") {
		t.Errorf("window mode for lora: %v", err)
	}
	ex := &adapt.Adapter{Meta: adapt.Meta{Kind: adapt.KindExperts, Rank: 2, Alpha: 1, Experts: 3, Base: base}}
	if _, err := NewAdaptive(m, ex, AdaptOptions{}); err == nil || !strings.Contains(err.Error(), "domain") {
		t.Errorf("experts adapter: %v", err)
	}
}

// The per-request switch is validated like every other field.
func TestAdaptField(t *testing.T) {
	_, url, _ := refServer(t, Options{Slots: 1})
	for _, c := range []struct {
		body, param string
	}{
		{`{"prompt":"hi","adapt":"no"}`, "adapt"},
		{`{"prompt":"hi","adapt":true}`, "adapt"}, // the base server has no adapter
		{`{"prompt":"hi","adapt":false,"adapter":false}`, "adapter"},
	} {
		r := post(context.Background(), t, url, c.body)
		if r.Status != 400 || r.Err.Param == nil || *r.Err.Param != c.param {
			t.Errorf("%s: %d %s, want 400 about %s", c.body, r.Status, r.Body, c.param)
		}
	}
	if r := post(context.Background(), t, url, `{"prompt":"hi","adapt":false,"max_tokens":1}`); r.Status != 200 {
		t.Errorf(`"adapt": false on the base server: %d %s`, r.Status, r.Body)
	}
}
