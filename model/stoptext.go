package model

import (
	"bytes"
	"sort"
	"unicode/utf8"
)

// StopText accumulates one sequence's generated text, cuts it before the
// first stop string, and releases text only once it can no longer be part
// of a stop string nor the first bytes of a UTF-8 character that the next
// token completes: so streamed text always equals the final text, and no
// streamed piece splits a character. Generate and the server both use it.
type StopText struct {
	stops    []string
	text     []byte // all text kept so far
	released int    // bytes of text already released
	offsets  []int  // byte offset in text of each added token
}

// NewStopText is an empty text that stops at any of stops ("" is ignored).
func NewStopText(stops []string) *StopText { return &StopText{stops: stops} }

// Text is the text kept so far (cut before a stop string once one occurs).
func (s *StopText) Text() []byte { return s.text }

// Add appends a token's bytes and reports whether a stop string now occurs
// (the text is then cut before it).
func (s *StopText) Add(b []byte) bool {
	s.offsets = append(s.offsets, len(s.text))
	s.text = append(s.text, b...)
	cut := len(s.text)
	for _, st := range s.stops {
		if st == "" {
			continue
		}
		// Only the new bytes (and the len(st)-1 before them) can complete
		// a stop string that was not there before.
		from := max(0, len(s.text)-len(b)-len(st)+1)
		if i := bytes.Index(s.text[from:], []byte(st)); i >= 0 && from+i < cut {
			cut = from + i
		}
	}
	if cut < len(s.text) {
		s.text = s.text[:cut]
		return true
	}
	return false
}

// Release returns the range [from, to) of Text that can be released now;
// final releases everything that is left.
func (s *StopText) Release(final bool) (from, to int) {
	from, to = s.released, len(s.text)
	if !final {
		hold := 0
		for _, st := range s.stops {
			// The longest suffix of text that is a proper prefix of st.
			for k := min(len(st)-1, len(s.text)); k > hold; k-- {
				if bytes.HasSuffix(s.text, []byte(st[:k])) {
					hold = k
					break
				}
			}
		}
		to -= hold
		to = completeUTF8(s.text, from, to)
	}
	if to < from {
		to = from
	}
	s.released = to
	return from, to
}

// completeUTF8 moves to back to the start of a trailing incomplete (but so
// far valid) UTF-8 encoding in text[from:to], if there is one.
func completeUTF8(text []byte, from, to int) int {
	for i := to - 1; i >= from && i >= to-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(text[i]) {
			if !utf8.FullRune(text[i:to]) {
				return i
			}
			return to
		}
	}
	return to
}

// TokensIn returns the indices [i, j) of the added tokens whose text
// starts in [from, to).
func (s *StopText) TokensIn(from, to int) (i, j int) {
	return sort.SearchInts(s.offsets, from), sort.SearchInts(s.offsets, to)
}
