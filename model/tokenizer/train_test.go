package tokenizer

import (
	"bytes"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// trainTexts is a small mixed text: prose, code, numbers, whitespace runs,
// accents and repeated words, so that merges of many kinds happen.
func trainTexts(r *rand.Rand, n int) []string {
	words := []string{"the", "then", "there", "func", "return", "err", "nil", "café", "naïve", "日本語",
		"  ", "\n\n", "\t", "1234", "42", "hello", "world", "aaaa", "ab", "ba", "😀", "if", "x := 1"}
	out := make([]string, n)
	for i := range out {
		var sb strings.Builder
		for j := 0; j < 5+r.IntN(40); j++ {
			sb.WriteString(words[r.IntN(len(words))])
			if r.IntN(3) > 0 {
				sb.WriteByte(" .,\n"[r.IntN(4)])
			}
		}
		out[i] = sb.String()
	}
	return out
}

// naiveBPE is the textbook trainer: recount every pair over every word at
// each step and merge the most frequent (ties: smaller ids). It returns the
// merge list as (left, right) token byte strings.
func naiveBPE(texts []string, vocabSize, minCount int) [][2]string {
	counts := map[string]int{}
	for _, s := range texts {
		for _, p := range appendPieces(nil, s) {
			counts[p]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	tokens := map[string]int32{}
	names := []string{}
	for i := 0; i < 256; i++ {
		tokens[string([]byte{byte(i)})] = int32(i)
		names = append(names, string([]byte{byte(i)}))
	}
	words := make([][]int32, len(keys))
	for i, k := range keys {
		for j := 0; j < len(k); j++ {
			words[i] = append(words[i], int32(k[j]))
		}
	}
	var merges [][2]string
	for len(names) < vocabSize-1 {
		pc := map[[2]int32]int{}
		for i, w := range words {
			for j := 0; j+1 < len(w); j++ {
				pc[[2]int32{w[j], w[j+1]}] += counts[keys[i]]
			}
		}
		var best [2]int32
		bn := 0
		for p, n := range pc {
			if n > bn || (n == bn && (p[0] < best[0] || (p[0] == best[0] && p[1] < best[1]))) {
				best, bn = p, n
			}
		}
		if bn < max(minCount, 1) {
			break
		}
		text := names[best[0]] + names[best[1]]
		id, ok := tokens[text]
		if !ok {
			id = int32(len(names))
			tokens[text] = id
			names = append(names, text)
		}
		merges = append(merges, [2]string{names[best[0]], names[best[1]]})
		for i, w := range words {
			var out []int32
			for j := 0; j < len(w); j++ {
				if j+1 < len(w) && w[j] == best[0] && w[j+1] == best[1] {
					out = append(out, id)
					j++
				} else {
					out = append(out, w[j])
				}
			}
			words[i] = out
		}
	}
	return merges
}

func mergeStrings(t *testing.T, tok *Tokenizer) [][2]string {
	t.Helper()
	list, err := tok.v.mergeList()
	if err != nil {
		t.Fatal(err)
	}
	out := make([][2]string, len(list))
	for i, m := range list {
		out[i] = [2]string{tok.v.tokens[m[0]], tok.v.tokens[m[1]]}
	}
	return out
}

func TestTrainBPEMatchesNaive(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for _, tc := range []struct{ texts, vocab, minCount int }{{1, 300, 1}, {30, 400, 1}, {200, 600, 2}, {50, 2000, 3}} {
		texts := trainTexts(r, tc.texts)
		tok, err := TrainBPE(slices.Values(texts), tc.vocab, tc.minCount)
		if err != nil {
			t.Fatal(err)
		}
		got, want := mergeStrings(t, tok), naiveBPE(texts, tc.vocab, tc.minCount)
		if !slices.Equal(got, want) {
			n := 0
			for n < min(len(got), len(want)) && got[n] == want[n] {
				n++
			}
			t.Fatalf("%+v: %d merges, naive %d; first difference at %d", tc, len(got), len(want), n)
		}
		if tok.VocabSize() > tc.vocab || tok.v.tokens[tok.EOT()] != EndOfText || int(tok.EOT()) != tok.VocabSize()-1 {
			t.Fatalf("%+v: vocabulary of %d, EndOfText at %d", tc, tok.VocabSize(), tok.EOT())
		}
	}
}

func TestTrainBPERoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 1))
	texts := trainTexts(r, 300)
	tok, err := TrainBPE(slices.Values(texts), 700, 1)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 700 {
		t.Fatalf("vocabulary %d, want 700", tok.VocabSize())
	}
	again, err := TrainBPE(slices.Values(texts), 700, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := tok.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadFS(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	var inBytes, inTokens int
	for _, s := range append(texts[:50], "unseen: Ωmega ✓ \x00\xff bytes", "") {
		ids := tok.Encode(s)
		if !slices.Equal(ids, again.Encode(s)) || !slices.Equal(ids, loaded.Encode(s)) {
			t.Fatalf("%q: encodings differ between training runs or after writing the files", s)
		}
		if got := tok.Decode(ids); !bytes.Equal(got, []byte(s)) {
			t.Fatalf("decode(encode(%q)) = %q", s, got)
		}
		inBytes += len(s)
		inTokens += len(ids)
	}
	if float64(inBytes) < 2*float64(inTokens) {
		t.Fatalf("%d bytes became %d tokens: the merges compress less than 2x on their own training text", inBytes, inTokens)
	}
}

func TestTrainBPEErrors(t *testing.T) {
	if _, err := TrainBPE(slices.Values([]string{"x"}), 256, 1); err == nil {
		t.Fatal("a vocabulary of 256 was accepted")
	}
	// No text: only the bytes and EndOfText.
	tok, err := TrainBPE(slices.Values([]string(nil)), 1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 257 {
		t.Fatalf("empty corpus: vocabulary %d, want 257", tok.VocabSize())
	}
	if got := tok.Encode("abc"); !slices.Equal(got, []int32{97, 98, 99}) {
		t.Fatalf("empty corpus: \"abc\" encodes as %v", got)
	}
}
