package serve

import (
	"strings"
	"testing"
)

// seqText releases text that can no longer start a stop string nor split
// a UTF-8 character, and the released pieces always add up to the final text.
func TestSeqText(t *testing.T) {
	cases := []struct {
		stops    []string
		pieces   []string
		final    string
		stopped  bool
		released []string // after each piece (then the final flush appended)
	}{
		{nil, []string{"Hel", "lo"}, "Hello", false, []string{"Hel", "lo", ""}},
		{[]string{"\n\n"}, []string{"a\n", "b\n", "\n", "c"}, "a\nb", true, []string{"a", "\nb", "", ""}},
		{[]string{"END"}, []string{"xE", "N", "Dy"}, "x", true, []string{"x", "", "", ""}},
		{[]string{"END"}, []string{"xE", "N", "!"}, "xEN!", false, []string{"x", "", "EN!", ""}},
		// "é" is C3 A9: a token boundary between the two bytes holds the first.
		{nil, []string{"caf\xc3", "\xa9!"}, "café!", false, []string{"caf", "\xc3\xa9!", ""}},
		{nil, []string{"x\xe2\x82"}, "x\xe2\x82", false, []string{"x", "\xe2\x82"}},
		// Invalid bytes are not held.
		{nil, []string{"a\xff"}, "a\xff", false, []string{"a\xff", ""}},
		{[]string{"", "zz"}, []string{"az", "z"}, "a", true, []string{"a", "", ""}},
	}
	for _, c := range cases {
		s := seqText{stops: c.stops}
		var got []string
		stopped := false
		for _, p := range c.pieces {
			if s.add([]byte(p)) {
				stopped = true
				from, to := s.release(true)
				got = append(got, string(s.text[from:to]))
				break
			}
			from, to := s.release(false)
			got = append(got, string(s.text[from:to]))
		}
		from, to := s.release(true)
		got = append(got, string(s.text[from:to]))
		if string(s.text) != c.final || stopped != c.stopped || strings.Join(got, "") != c.final {
			t.Errorf("stops %q pieces %q: text %q stopped %v released %q; want %q %v", c.stops, c.pieces, s.text, stopped, got, c.final, c.stopped)
		}
		if strings.Join(got, "|") != strings.Join(c.released, "|") {
			t.Errorf("stops %q pieces %q: released %q, want %q", c.stops, c.pieces, got, c.released)
		}
	}
}

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
