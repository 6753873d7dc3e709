package serve

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// TestCacheAdmissionOffLoop: while the memory admits one request's prompt
// (held here for as long as the test likes), the other running request
// goes on stepping and finishes; the held one then finishes with the
// tokens and pool a server that admitted both at once gives.
func TestCacheAdmissionOffLoop(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	long := map[string]any{"prompt": cachePrompts[0], "max_tokens": 24, "temperature": 0}
	short := cacheReq(cachePrompts[1])

	// The reference: the same two requests, one after the other.
	_, refURL := testServer(t, Base{m}, tok, Options{Slots: 2, Cache: true, CacheNeural: true})
	refA, refB := post(context.Background(), t, refURL, long), post(context.Background(), t, refURL, short)
	if refA.Status != 200 || refB.Status != 200 {
		t.Fatalf("reference: %d %s / %d %s", refA.Status, refA.Body, refB.Status, refB.Body)
	}

	s, url := testServer(t, Base{m}, tok, Options{Slots: 2, Cache: true, CacheNeural: true})
	var calls atomic.Int32
	admitted, release := make(chan struct{}, 4), make(chan struct{})
	adm := s.Scheduler().tc.adm
	adm.mu.Lock()
	adm.hook = func() {
		if calls.Add(1) == 2 {
			<-release
		}
		admitted <- struct{}{}
	}
	adm.mu.Unlock()
	ra, rb := make(chan reply, 1), make(chan reply, 1)
	go func() { ra <- post(context.Background(), t, url, long) }()
	<-admitted // A is in the memory and stepping
	go func() { rb <- post(context.Background(), t, url, short) }()
	var a reply
	select {
	case a = <-ra:
	case <-time.After(2 * time.Minute):
		close(release)
		t.Fatal("the running request did not finish while another's admission was held: the admission blocks the steps")
	}
	select {
	case <-rb:
		t.Fatal("the held request finished before its admission was released")
	default:
	}
	if calls.Load() != 2 {
		t.Fatalf("%d admissions begun, want 2 (the second held)", calls.Load())
	}
	close(release)
	b := <-rb
	if a.Status != 200 || b.Status != 200 {
		t.Fatalf("%d %s / %d %s", a.Status, a.Body, b.Status, b.Body)
	}
	if mustJSON(withoutExt(a.C.Choices)) != mustJSON(withoutExt(refA.C.Choices)) ||
		mustJSON(withoutExt(b.C.Choices)) != mustJSON(withoutExt(refB.C.Choices)) {
		t.Fatalf("outputs differ from one-at-a-time admission:\n%s\n%s\nwant\n%s\n%s",
			mustJSON(a.C.Choices), mustJSON(b.C.Choices), mustJSON(refA.C.Choices), mustJSON(refB.C.Choices))
	}
	ca, cb := a.C.Choices[0].Chameleon.Cache, b.C.Choices[0].Chameleon.Cache
	ra2, rb2 := refA.C.Choices[0].Chameleon.Cache, refB.C.Choices[0].Chameleon.Cache
	if mustJSON(ca) != mustJSON(ra2) || mustJSON(cb) != mustJSON(rb2) {
		t.Fatalf("cache snapshots %s / %s, want %s / %s", mustJSON(ca), mustJSON(cb), mustJSON(ra2), mustJSON(rb2))
	}
}

// TestCacheMaxKeys: with CacheMaxKeys the served memory holds at most
// that many neural keys over its pools (the pool a request joins
// excepted, whatever its size), evicting least recently used pools whole;
// MemoryBound says the bound and its bytes, and without it the
// centroids' and run-time clusters' worst case.
func TestCacheMaxKeys(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testHyper(t, m, 4, 7)
	const bound = 12
	s, url := testServer(t, newAdaptive(t, m, a, AdaptOptions{}), tok, Options{Slots: 2, Cache: true, CacheNeural: true, CacheMaxKeys: bound})
	pools := map[string]bool{}
	for _, p := range append(adaptPrompts, adaptPrompts...) {
		r := post(context.Background(), t, url, cacheReq(p))
		if r.Status != 200 {
			t.Fatalf("%q: %d %s", p, r.Status, r.Body)
		}
		pools[r.C.Choices[0].Chameleon.Cache.Pool] = true
		st := s.Scheduler().Stats().Memory
		if ids := len(tok.Encode(p)); st.Keys > max(bound, 2*(ids-1)) {
			t.Fatalf("%d keys held after %q, bound %d", st.Keys, p, bound)
		}
	}
	st := s.Scheduler().Stats().Memory
	if len(pools) < 2 || st.Evicted == 0 {
		t.Fatalf("pools %v, stats %+v: want evictions across pools", pools, st)
	}
	keys, bytes, ok := s.Scheduler().MemoryBound()
	if !ok || keys != bound || bytes != bound*(adapt.MemoryConfig{Width: m.Cfg.NEmbd}).KeyBytes() {
		t.Fatalf("MemoryBound %d keys, %d bytes, %v", keys, bytes, ok)
	}
	s2, _ := testServer(t, newAdaptive(t, m, a, AdaptOptions{}), tok, Options{Slots: 2, Cache: true, CacheNeural: true})
	if keys, _, _ := s2.Scheduler().MemoryBound(); keys != (4+adapt.DefaultMemoryClusters+1)*adapt.DefaultMemoryKeys {
		t.Fatalf("unbounded MemoryBound %d keys", keys)
	}
	if _, err := New(Base{m}, tok, Options{Slots: 2, Cache: true, CacheMaxKeys: 5}); err == nil {
		t.Fatal("CacheMaxKeys without the neural cache: accepted")
	}
}
