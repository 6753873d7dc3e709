package serve

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// groupCounter is an Adaptive that counts Group's calls (each one a base
// pass over the admitted prompts).
type groupCounter struct {
	*Adaptive
	groups int
}

func (g *groupCounter) Group(prompts [][]int32, live []int) ([]int, error) {
	g.groups++
	return g.Adaptive.Group(prompts, live)
}

// Online assignment inside the prefill: with a self-checked adapter of
// hidden-state features, served prompts fed a few tokens a step get the
// cluster (or the base model, where the self-check says so) and the
// first-token logprobs that the reference backend's Plan gives each prompt
// alone, with no Group call (no base pass of their own); prompts sent
// together, prefilled side by side, get the same; with GroupApart the
// old path serves the same through Group. A one-token prompt is assigned
// from its one row, and the self-check keeps it at the base model.
func TestAdaptOnlineInPrefill(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	rm := refTiny(t)
	prompts := append([]string{"The history of the Roman Empire spans many centuries, from the founding of the city to"}, adaptPrompts...)
	prompts = append(prompts, "A") // one token: nothing for the self-check to score
	if n := len(tok.Encode("A")); n != 1 {
		t.Fatalf("%q is %d tokens", "A", n)
	}
	for _, c := range []struct {
		selfCheck   bool
		checkTokens int // the self-check's last predictions (0: the default, more than these prompts have)
	}{{true, 0}, {false, 0}, {true, 3}} {
		a := testHyper(t, m, 4, 7)
		a.Meta.Features, a.Meta.SelfCheck = adapt.FeatureHidden, c.selfCheck
		t.Run(fmt.Sprintf("self-check %v of %d", c.selfCheck, c.checkTokens), func(t *testing.T) {
			checkInPrefill(t, m, rm, tok, a, prompts, c.checkTokens)
		})
	}
}

// checkInPrefill is TestAdaptOnlineInPrefill for one adapter.
func checkInPrefill(t *testing.T, m, rm *model.Model, tok *tokenizer.Tokenizer, a *adapt.Adapter, prompts []string, checkTokens int) {
	rrt, err := adapt.NewRuntime(rm, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rrt.Free()
	rrt.CheckTokens = checkTokens
	want := make([][]float64, len(prompts))
	wantCl := make([]int, len(prompts))
	seen := map[int]bool{}
	for i, p := range prompts {
		ids := tok.Encode(p)
		plan, err := rrt.Plan([][]int32{ids}, adapt.PlanOptions{Mode: adapt.ModeOnline})
		if err != nil {
			t.Fatal(err)
		}
		wantCl[i], seen[plan.Cluster[0]] = plan.Cluster[0], true
		want[i] = refLogProbs(t, rm, ids, func() model.Adapter { return plan.Adapter(nil) })
		plan.Free()
	}
	t.Logf("clusters %v", wantCl)
	if a.Meta.SelfCheck && !seen[-1] || len(seen) < 2 {
		t.Fatalf("the prompts got clusters %v: pick others (want two or more, and the base model for one where the self-check runs)", wantCl)
	}
	check := func(what string, c Choice, i int) {
		t.Helper()
		checkLogprobs(t, fmt.Sprintf("%s %q (cluster %d)", what, prompts[i], wantCl[i]), c, want[i])
		e := c.Chameleon
		switch {
		case e == nil:
			t.Errorf("%s %q: no chameleon extension", what, prompts[i])
		case wantCl[i] < 0 && (e.Adapted || e.Reason != "gate"):
			t.Errorf("%s %q: adapted %v (%s), want kept at the base model by the self-check", what, prompts[i], e.Adapted, e.Reason)
		case wantCl[i] >= 0 && (e.Cluster == nil || *e.Cluster != wantCl[i]):
			t.Errorf("%s %q: cluster %v, want %d", what, prompts[i], e.Cluster, wantCl[i])
		}
	}
	for _, apart := range []bool{false, true} {
		ad := &groupCounter{Adaptive: newAdaptive(t, m, a, AdaptOptions{})}
		ad.RT.CheckTokens = checkTokens
		_, url := testServer(t, ad, tok, Options{Slots: 3, PrefillChunk: 4, GroupApart: apart})
		what := fmt.Sprintf("apart %v:", apart)
		for i, p := range prompts {
			r := post(context.Background(), t, url, map[string]any{"prompt": p, "max_tokens": 1, "temperature": 0, "logprobs": 5})
			if r.Status != 200 {
				t.Fatalf("%s %q: %d %s", what, p, r.Status, r.Body)
			}
			check(what+" alone", r.C.Choices[0], i)
		}
		// Three at once: prefilled side by side, finishing in different steps.
		r := post(context.Background(), t, url, map[string]any{"prompt": prompts[:3], "max_tokens": 1, "temperature": 0, "logprobs": 5})
		if r.Status != 200 || len(r.C.Choices) != 3 {
			t.Fatalf("%s together: %d %s", what, r.Status, r.Body)
		}
		for _, c := range r.C.Choices {
			check(what+" together", c, c.Index)
		}
		if got := ad.groups > 0; got != apart {
			t.Errorf("%s Group ran %d times", what, ad.groups)
		}
	}
}

// failOnce is an Adaptive whose next assignment in the prefill fails for
// every prompt it decides.
type failOnce struct {
	*Adaptive
	done bool
}

func (f *failOnce) TakeDecided() (map[int]int, map[int]error) {
	d, failed := f.Adaptive.TakeDecided()
	if f.done || len(d) == 0 {
		return d, failed
	}
	f.done = true
	if failed == nil {
		failed = map[int]error{}
	}
	for b := range d {
		failed[b] = fmt.Errorf("injected assignment failure")
	}
	return nil, failed
}

// A prompt whose assignment in the prefill fails ends its request with a
// 500 naming the cause; the server goes on serving adapted requests.
func TestAdaptInPrefillFailure(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testHyper(t, m, 4, 7)
	a.Meta.Features = adapt.FeatureHidden
	ad := &failOnce{Adaptive: newAdaptive(t, m, a, AdaptOptions{})}
	_, url := testServer(t, ad, tok, Options{Slots: 2, PrefillChunk: 4})
	body := map[string]any{"prompt": adaptPrompts[2], "max_tokens": 2, "temperature": 0}
	r := post(context.Background(), t, url, body)
	if r.Status != 500 || !strings.Contains(r.Err.Message, "injected assignment failure") {
		t.Fatalf("a failed assignment: %d %s", r.Status, r.Body)
	}
	r = post(context.Background(), t, url, body)
	if r.Status != 200 || r.C.Choices[0].Chameleon == nil || !r.C.Choices[0].Chameleon.Adapted {
		t.Fatalf("the next request: %d %s", r.Status, r.Body)
	}
}
