package tokenizer

import (
	"strings"
	"testing"
)

// benchText is every golden text, concatenated: prose, code, numbers,
// whitespace, several scripts and emoji (about 5 KB).
func benchText(b *testing.B) string {
	var sb strings.Builder
	for _, c := range golden(b).Cases {
		sb.WriteString(c.Text)
		sb.WriteString("\n")
	}
	return sb.String()
}

// BenchmarkEncode measures Encode with a warm cache, as in steady use.
func BenchmarkEncode(b *testing.B) {
	tok := gpt2(b)
	s := benchText(b)
	dst := tok.AppendEncode(nil, s)
	b.SetBytes(int64(len(s)))
	b.ResetTimer()
	for b.Loop() {
		dst = tok.AppendEncode(dst[:0], s)
	}
}

// BenchmarkEncodeCold measures Encode with an empty cache every time: each
// pre-token is merged from scratch the first time it appears.
func BenchmarkEncodeCold(b *testing.B) {
	v, err := r50kVocab()
	if err != nil {
		b.Fatal(err)
	}
	s := benchText(b)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		newTokenizer(v).Encode(s)
	}
}

// BenchmarkEncodeLongPiece measures the merge of one 64 KB letter run, which
// takes the O(n log n) heap path.
func BenchmarkEncodeLongPiece(b *testing.B) {
	tok := gpt2(b)
	s := strings.Repeat("abracadabra", 6000)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		tok.Encode(s)
	}
}

// BenchmarkLoadEmbedded measures parsing the embedded r50k ranks.
func BenchmarkLoadEmbedded(b *testing.B) {
	data, err := tiktokenAssetsR50k()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := parseTiktoken(data); err != nil {
			b.Fatal(err)
		}
	}
}
