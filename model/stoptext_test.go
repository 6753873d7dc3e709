package model

import (
	"strings"
	"testing"
)

// StopText releases text that can no longer start a stop string nor split
// a UTF-8 character, and the released pieces always add up to the final text.
func TestStopText(t *testing.T) {
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
		s := NewStopText(c.stops)
		var got []string
		stopped := false
		for _, p := range c.pieces {
			if s.Add([]byte(p)) {
				stopped = true
				from, to := s.Release(true)
				got = append(got, string(s.Text()[from:to]))
				break
			}
			from, to := s.Release(false)
			got = append(got, string(s.Text()[from:to]))
		}
		from, to := s.Release(true)
		got = append(got, string(s.Text()[from:to]))
		if string(s.Text()) != c.final || stopped != c.stopped || strings.Join(got, "") != c.final {
			t.Errorf("stops %q pieces %q: text %q stopped %v released %q; want %q %v", c.stops, c.pieces, s.Text(), stopped, got, c.final, c.stopped)
		}
		if strings.Join(got, "|") != strings.Join(c.released, "|") {
			t.Errorf("stops %q pieces %q: released %q, want %q", c.stops, c.pieces, got, c.released)
		}
	}
}
