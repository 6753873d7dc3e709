package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// writeAndLoad writes tok's files into a fresh directory and loads them
// back; it returns the loaded tokenizer and the two files' bytes.
func writeAndLoad(t *testing.T, tok *Tokenizer) (loaded *Tokenizer, enc, bpe []byte) {
	t.Helper()
	dir := t.TempDir()
	if err := tok.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	enc, err := os.ReadFile(filepath.Join(dir, "encoder.json"))
	if err != nil {
		t.Fatal(err)
	}
	bpe, err = os.ReadFile(filepath.Join(dir, "vocab.bpe"))
	if err != nil {
		t.Fatal(err)
	}
	loaded, err = LoadFS(os.DirFS(dir))
	if err != nil {
		t.Fatalf("loading the written files: %v", err)
	}
	return loaded, enc, bpe
}

// sameTokenizer checks that a and b have the same vocabulary and encode the
// texts, and random strings built from their tokens and random bytes, alike.
func sameTokenizer(t *testing.T, a, b *Tokenizer, texts []string, seed uint64, n int) {
	t.Helper()
	if a.VocabSize() != b.VocabSize() || a.EOT() != b.EOT() {
		t.Fatalf("VocabSize %d vs %d, EOT %d vs %d", a.VocabSize(), b.VocabSize(), a.EOT(), b.EOT())
	}
	for id := range int32(a.VocabSize()) {
		if x, y := a.TokenBytes(id), b.TokenBytes(id); !bytes.Equal(x, y) {
			t.Fatalf("token %d: %q vs %q", id, x, y)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	for range n {
		var sb strings.Builder
		for range 1 + rng.IntN(12) {
			switch rng.IntN(4) {
			case 0: // a random byte, often not valid UTF-8
				sb.WriteByte(byte(rng.IntN(256)))
			case 1:
				sb.WriteByte(" \n\t'aeht"[rng.IntN(8)])
			default: // a whole token, so that long merges are exercised
				sb.Write(a.TokenBytes(rng.Int32N(int32(a.VocabSize()))))
			}
		}
		texts = append(texts, sb.String())
	}
	for _, s := range texts {
		if x, y := a.Encode(s), b.Encode(s); !slices.Equal(x, y) {
			t.Fatalf("Encode(%q): %v vs %v", s, x, y)
		}
		if x, y := a.EncodeWithSpecial(s), b.EncodeWithSpecial(s); !slices.Equal(x, y) {
			t.Fatalf("EncodeWithSpecial(%q): %v vs %v", s, x, y)
		}
	}
}

// TestWriteFilesGPT2 writes the embedded GPT-2 tokenizer's files, loads
// them and checks that they give the same tokenizer, on the golden texts
// too; then that a tokenizer loaded from files writes the same bytes again.
func TestWriteFilesGPT2(t *testing.T) {
	emb := gpt2(t)
	loaded, enc, bpe := writeAndLoad(t, emb)
	if got := len(loaded.v.merges); got != 50000 {
		t.Errorf("%d merges written, want 50000", got)
	}
	if !bytes.HasPrefix(bpe, []byte("#version: 0.2\nĠ t\nĠ a\nh e\n")) {
		t.Errorf("vocab.bpe starts %q", bpe[:min(len(bpe), 40)])
	}
	if !bytes.HasPrefix(enc, []byte(`{"!": 0, "\"": 1, "#": 2,`)) || !bytes.HasSuffix(enc, []byte(`, "\u0120gazed": 50255, "<|endoftext|>": 50256}`)) {
		t.Errorf("encoder.json starts %q, ends %q", enc[:40], enc[len(enc)-60:])
	}

	g := golden(t)
	var texts []string
	for _, c := range g.Cases {
		if got := loaded.Encode(c.Text); !slices.Equal(got, c.IDs) {
			t.Errorf("%s: written files encode %q as %v, want %v", c.Name, c.Text, got, c.IDs)
		}
		texts = append(texts, c.Text)
	}
	sameTokenizer(t, emb, loaded, texts, 1, 2000)

	// A tokenizer read from vocab.bpe writes its merge list back unchanged.
	var enc2, bpe2 bytes.Buffer
	if err := loaded.WriteEncoderJSON(&enc2); err != nil {
		t.Fatal(err)
	}
	if err := loaded.WriteVocabBPE(&bpe2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc2.Bytes(), enc) || !bytes.Equal(bpe2.Bytes(), bpe) {
		t.Error("the reloaded tokenizer writes different files")
	}
}

// TestWriteFilesMatchReal runs when CHAMELEON_GPT2_VOCAB_DIR names a
// directory with GPT-2's encoder.json and vocab.bpe: the files written from
// the embedded ranks must equal them byte for byte.
func TestWriteFilesMatchReal(t *testing.T) {
	dir := os.Getenv("CHAMELEON_GPT2_VOCAB_DIR")
	if dir == "" {
		t.Skip("set CHAMELEON_GPT2_VOCAB_DIR to a directory with GPT-2's encoder.json and vocab.bpe")
	}
	realEnc, err := os.ReadFile(filepath.Join(dir, "encoder.json"))
	if err != nil {
		t.Fatal(err)
	}
	realBPE, err := os.ReadFile(filepath.Join(dir, "vocab.bpe"))
	if err != nil {
		t.Fatal(err)
	}
	_, enc, bpe := writeAndLoad(t, gpt2(t))

	if !bytes.Equal(bpe, realBPE) {
		got, want := strings.Split(string(bpe), "\n"), strings.Split(string(realBPE), "\n")
		t.Errorf("vocab.bpe: %d lines written, %d in %s", len(got), len(want), dir)
		shown := 0
		for i := range max(len(got), len(want)) {
			var g, w string
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w && shown < 20 {
				t.Errorf("vocab.bpe line %d: wrote %q, real %q", i+1, g, w)
				shown++
			}
		}
	}

	var gotMap, wantMap map[string]int32
	if err := json.Unmarshal(enc, &gotMap); err != nil {
		t.Fatalf("written encoder.json: %v", err)
	}
	if err := json.Unmarshal(realEnc, &wantMap); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(gotMap, wantMap) {
		t.Errorf("encoder.json differs as JSON: %d entries written, %d real", len(gotMap), len(wantMap))
	}
	if !bytes.Equal(enc, realEnc) {
		i := 0
		for i < len(enc) && i < len(realEnc) && enc[i] == realEnc[i] {
			i++
		}
		t.Errorf("encoder.json differs from byte %d: wrote %q, real %q", i, enc[i:min(len(enc), i+40)], realEnc[i:min(len(realEnc), i+40)])
	}

	// Loaded from the real files, the tokenizer writes them back unchanged.
	files, err := LoadFS(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	var enc2, bpe2 bytes.Buffer
	if err := files.WriteEncoderJSON(&enc2); err != nil {
		t.Fatal(err)
	}
	if err := files.WriteVocabBPE(&bpe2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc2.Bytes(), realEnc) || !bytes.Equal(bpe2.Bytes(), realBPE) {
		t.Error("the tokenizer loaded from the real files does not write them back byte for byte")
	}
}

// spell writes token bytes in GPT-2's byte-to-unicode alphabet.
func spell(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteRunes[s[i]])
	}
	return b.String()
}

// TestWriteFilesSynthetic loads small hand-made files, in the canonical
// format, with ids that are not byte values and a merge list that BPE
// training could not have produced, and checks that they are written back
// byte for byte.
func TestWriteFilesSynthetic(t *testing.T) {
	// Byte b has id 255-b; merged tokens follow, then EndOfText. The merges
	// (b c) (a b) (ab c) make "abc" from ab+c although BPE on "abc" gives
	// a|bc: a merge list read from a file is kept as it is, not rebuilt.
	merges := [][2]string{
		{"b", "c"}, {"a", "b"}, {"ab", "c"}, {" ", "\""}, {"\\", "\n"},
		{"\xff", "\x00"}, {"é"[:1], "é"[1:]}, {"a", "a"}, {"aa", "aa"},
	}
	byID := make([]string, 256)
	for b := range 256 {
		byID[255-b] = string([]byte{byte(b)})
	}
	var bpe strings.Builder
	bpe.WriteString("#version: 0.2\n")
	for _, m := range merges {
		fmt.Fprintf(&bpe, "%s %s\n", spell(m[0]), spell(m[1]))
		byID = append(byID, m[0]+m[1])
	}
	byID = append(byID, EndOfText)
	// The oracle for encoder.json: strconv.QuoteToASCII writes the
	// byte-to-unicode alphabet (printable ASCII and runes from U+00A1 up) as
	// Python's json.dumps does.
	var enc strings.Builder
	enc.WriteString("{")
	for id, tok := range byID {
		if id > 0 {
			enc.WriteString(", ")
		}
		fmt.Fprintf(&enc, "%s: %d", strconv.QuoteToASCII(spell(tok)), id)
	}
	enc.WriteString("}")
	if !strings.Contains(enc.String(), `"\u0120\"": 259, "\\\u010a": 260`) {
		t.Fatalf("test oracle: encoder.json is %s", enc.String()[len(enc.String())-200:])
	}

	tok, err := Load(strings.NewReader(enc.String()), strings.NewReader(bpe.String()))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("abc"); !slices.Equal(got, []int32{255 - 'a', 256}) {
		t.Fatalf("Encode(abc) = %v, want a|bc", got)
	}
	loaded, gotEnc, gotBPE := writeAndLoad(t, tok)
	if string(gotEnc) != enc.String() {
		t.Errorf("encoder.json\nwrote %s\n want %s", gotEnc, enc.String())
	}
	if string(gotBPE) != bpe.String() {
		t.Errorf("vocab.bpe\nwrote %q\n want %q", gotBPE, bpe.String())
	}
	sameTokenizer(t, tok, loaded, []string{"abc aaaaa \"\\\n\xff\x00é<|endoftext|>"}, 2, 300)

	// Without EndOfText in encoder.json, Load gives it the next id,
	// and the written encoder.json lists it there.
	noEOT := strings.Replace(enc.String(), `, "<|endoftext|>": 265`, "", 1)
	tok2, err := Load(strings.NewReader(noEOT), strings.NewReader(bpe.String()))
	if err != nil {
		t.Fatal(err)
	}
	var enc2 bytes.Buffer
	if err := tok2.WriteEncoderJSON(&enc2); err != nil {
		t.Fatal(err)
	}
	if enc2.String() != enc.String() {
		t.Errorf("without EndOfText: wrote %s", enc2.String())
	}
}

// rankTable is a tiktoken rank file: the 256 bytes in byte order, then
// tokens with ranks 256, 257, ...
func rankTable(t *testing.T, tokens ...string) *Tokenizer {
	t.Helper()
	var b bytes.Buffer
	for i := range 256 {
		fmt.Fprintf(&b, "%s %d\n", b64([]byte{byte(i)}), i)
	}
	for i, tok := range tokens {
		fmt.Fprintf(&b, "%s %d\n", b64([]byte(tok)), 256+i)
	}
	v, err := parseTiktoken(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return newTokenizer(v)
}

// TestWriteFilesRankTable reconstructs the merge list of small rank tables.
func TestWriteFilesRankTable(t *testing.T) {
	// The table lists every split of a token: "the" is also t+he, "eee"
	// e+ee, "eeee" e+eee and eee+e, "hee" h+ee. BPE with the lower ranks
	// reaches th+e, ee+e, ee+ee and he+e.
	tok := rankTable(t, "th", "the", " the", "he", "ee", "eee", "eeee", "hee")
	loaded, _, bpe := writeAndLoad(t, tok)
	want := "#version: 0.2\nt h\nth e\nĠ the\nh e\ne e\nee e\nee ee\nhe e\n"
	if string(bpe) != want {
		t.Errorf("vocab.bpe\nwrote %q\n want %q", bpe, want)
	}
	sameTokenizer(t, tok, loaded, []string{"the theee eeeee hee heee thee"}, 3, 500)

	// "abcd" is ab+cd, but "cd" ranks after it: the merges below its rank
	// leave ab|c|d, so it is not a merge and the table cannot be written.
	bad := rankTable(t, "ab", "abcd", "cd")
	var buf bytes.Buffer
	err := bad.WriteVocabBPE(&buf)
	if err == nil || !strings.Contains(err.Error(), `"abcd"`) || !strings.Contains(err.Error(), "3 parts") {
		t.Errorf("WriteVocabBPE on an irreducible token: err = %v", err)
	}
	if buf.Len() != 0 {
		t.Errorf("WriteVocabBPE wrote %q before failing", buf.String())
	}
	dir := filepath.Join(t.TempDir(), "out")
	if err := bad.WriteFiles(dir); err == nil {
		t.Error("WriteFiles on an irreducible token succeeded")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("WriteFiles failed but created %s (stat: %v)", dir, err)
	}
}

func TestAppendPythonJSONString(t *testing.T) {
	// Expected values are Python 3's json.dumps(s).
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"a/b", `"a/b"`},
		{`"q"`, `"\"q\""`},
		{`back\slash`, `"back\\slash"`},
		{"\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"\x00\x1f\x7f", `"\u0000\u001f\u007f"`},
		{"é€", `"\u00e9\u20ac"`},
		{"Ġthe", `"\u0120the"`},
		{"😀", `"\ud83d\ude00"`},
		{"\u00a0\u0100", `"\u00a0\u0100"`},
	} {
		if got := string(appendPythonJSONString(nil, tc.in)); got != tc.want {
			t.Errorf("appendPythonJSONString(%q) = %s, want %s", tc.in, got, tc.want)
		}
		var back string
		if err := json.Unmarshal([]byte(tc.want), &back); err != nil || back != tc.in {
			t.Errorf("%s parses to %q, %v", tc.want, back, err)
		}
	}
}
