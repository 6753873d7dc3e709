package serve

import (
	"testing"
)

func TestTopLogprobs(t *testing.T) {
	lp := []float32{-3, -1, -2, -1, -5}
	got := topLogprobs(lp, 3)
	want := []TopLogprob{{1, -1}, {3, -1}, {2, -2}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("got %v, want %v", got, want)
		}
	}
	if topLogprobs(lp, 0) != nil {
		t.Errorf("k=0 should give nil")
	}
}
