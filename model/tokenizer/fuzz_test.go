package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

// FuzzTokenizerRoundTrip checks, for any byte string (invalid UTF-8
// included), that Decode(Encode(s)) is s exactly, that every id is in range
// and is not EOT, that the pre-tokens tile s, and that the heap and the
// quadratic merge agree on every pre-token.
func FuzzTokenizerRoundTrip(f *testing.F) {
	for _, c := range golden(f).Cases {
		f.Add([]byte(c.Text))
	}
	for _, s := range []string{"\xff\xfe", "a\x80b", " \xc3\xa9\xc3", "\xed\xa0\x80x", "  \t\n\xff", "'s'S\x00", EndOfText} {
		f.Add([]byte(s))
	}
	tok := gpt2(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		s := string(in)
		ids := tok.Encode(s)
		for _, id := range ids {
			if id < 0 || int(id) >= tok.VocabSize() || id == tok.EOT() {
				t.Fatalf("Encode(%q) gave id %d", s, id)
			}
		}
		if got, err := tok.DecodeChecked(ids); err != nil || string(got) != s {
			t.Fatalf("Decode(Encode(%q)) = %q, %v (ids %v)", s, got, err, ids)
		}
		pieces := appendPieces(nil, s)
		if strings.Join(pieces, "") != s {
			t.Fatalf("pieces %q do not tile %q", pieces, s)
		}
		for _, p := range pieces {
			if p == "" {
				t.Fatalf("empty pre-token in %q", s)
			}
			if q, h := tok.v.appendBPEQuadratic(nil, p), tok.v.appendBPEHeap(nil, p); !slices.Equal(q, h) {
				t.Fatalf("piece %q: quadratic %v, heap %v", p, q, h)
			}
		}
		if withSpecial := tok.EncodeWithSpecial(s); tok.DecodeString(withSpecial) != s {
			t.Fatalf("Decode(EncodeWithSpecial(%q)) differs", s)
		}
	})
}
