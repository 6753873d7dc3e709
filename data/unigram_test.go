package data

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

func TestUnigram(t *testing.T) {
	const v = 37
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]int32, 500)
	count := map[int32]int{}
	for i := range ids {
		ids[i] = int32(rng.IntN(v / 2)) // half the vocabulary never seen
		count[ids[i]]++
	}
	u, err := NewUnigram(v)
	if err != nil {
		t.Fatal(err)
	}
	// Before anything is added every id is equally likely: perplexity V.
	if p, err := u.Perplexity(ids); err != nil || math.Abs(p-v) > 1e-9 {
		t.Errorf("empty model: perplexity %v, %v; want %d", p, err, v)
	}
	if err := u.Add(ids[:200]); err != nil {
		t.Fatal(err)
	}
	if err := u.Add(ids[200:]); err != nil {
		t.Fatal(err)
	}
	var sum, nll float64
	for id := int32(0); id < v; id++ {
		want := float64(count[id]+1) / float64(len(ids)+v)
		if got := u.Prob(id); math.Abs(got-want) > 1e-15 {
			t.Errorf("Prob(%d) = %v, want (%d+1)/(%d+%d)", id, got, count[id], len(ids), v)
		}
		sum += u.Prob(id)
		nll -= float64(count[id]) * math.Log(u.Prob(id))
		// A stream of one id: perplexity 1/p.
		if p, err := u.Perplexity([]int32{id, id, id}); err != nil || math.Abs(p*u.Prob(id)-1) > 1e-12 {
			t.Errorf("perplexity of id %d repeated: %v, %v; want 1/%v", id, p, err, u.Prob(id))
		}
	}
	if math.Abs(sum-1) > 1e-12 {
		t.Errorf("probabilities sum to %v", sum)
	}
	// On its own training stream: exp of the mean of -log p, summed by id.
	if p, err := u.Perplexity(ids); err != nil || math.Abs(p-math.Exp(nll/float64(len(ids))))/p > 1e-12 {
		t.Errorf("perplexity of the training stream %v, %v; want %v", p, err, math.Exp(nll/float64(len(ids))))
	}
	// A stream of the ids never seen is harder than the training stream.
	unseen := []int32{v - 1, v - 2, v - 3}
	if pu, _ := u.Perplexity(unseen); pu <= v {
		t.Errorf("perplexity of unseen ids %v, want above %d", pu, v)
	}
}

func TestUnigramBadInput(t *testing.T) {
	if _, err := NewUnigram(0); err == nil {
		t.Error("NewUnigram(0): no error")
	}
	u, err := NewUnigram(4)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]int32{{1, 4}, {-1}, {0, 2, 9}} {
		if err := u.Add(bad); err == nil {
			t.Errorf("Add(%v): no error", bad)
		}
		if _, err := u.Perplexity(bad); err == nil {
			t.Errorf("Perplexity(%v): no error", bad)
		}
	}
	if u.Prob(1) != 0.25 { // nothing of the refused streams was counted
		t.Errorf("after refused streams Prob(1) = %v, want 1/4", u.Prob(1))
	}
	if _, err := u.Perplexity(nil); err == nil {
		t.Error("Perplexity of an empty stream: no error")
	}
}

// TestFitUnigramAndStream: the baseline of `chameleon card` counts exactly
// the pretraining domains' train documents, each with its <|endoftext|>, and
// a stream is the documents joined, cut at maxTokens.
func TestFitUnigramAndStream(t *testing.T) {
	src, goroot := fakeSources(t, 30)
	out := filepath.Join(t.TempDir(), "corpus")
	buildFake(t, src, goroot, out, 0)
	c, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	v := tok.VocabSize()
	u, err := FitUnigram(c, tok, v)
	if err != nil {
		t.Fatal(err)
	}
	want, err := NewUnigram(v)
	if err != nil {
		t.Fatal(err)
	}
	var joined []int32 // every pretraining train document, for the check below
	for _, dom := range c.DomainsWithRole(RolePretrain) {
		docs, err := c.Docs(dom, SplitTrain)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			joined = append(joined, tok.Encode(d.Text)...)
			joined = append(joined, tok.EOT())
		}
	}
	if len(joined) == 0 {
		t.Fatal("the fake corpus has no pretraining train text")
	}
	if err := want.Add(joined); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(u.counts, want.counts) || u.total != want.total {
		t.Errorf("FitUnigram: %v tokens counted, want %v", u.total, want.total)
	}

	dom := c.DomainsWithRole(RolePretrain)[0]
	docs, err := c.Docs(dom, SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	var all []int32
	textBytes := 0
	for _, d := range docs {
		all = append(tok.AppendEncode(all, d.Text), tok.EOT())
		textBytes += len(d.Text)
	}
	s, nb, err := c.Stream(tok, dom, SplitTrain, len(all)+10)
	if err != nil || !slices.Equal(s, all) || nb != textBytes {
		t.Errorf("whole stream: %d tokens, %d bytes, %v; want %d, %d", len(s), nb, err, len(all), textBytes)
	}
	// Cut at a document's end, and inside the next document: the bytes
	// are those of the text covered (no <|endoftext|> counted).
	if len(docs) < 2 {
		t.Fatalf("%s train has %d documents, want 2 or more", dom, len(docs))
	}
	first, second := tok.Encode(docs[0].Text), tok.Encode(docs[1].Text)
	half := len(second) / 2
	for _, cut := range []struct{ tokens, bytes int }{
		{len(first) + 1, len(docs[0].Text)},
		{len(first) + 1 + half, len(docs[0].Text) + len(tok.Decode(second[:half]))},
	} {
		s, nb, err := c.Stream(tok, dom, SplitTrain, cut.tokens)
		if err != nil || !slices.Equal(s, all[:cut.tokens]) || nb != cut.bytes {
			t.Errorf("stream cut at %d tokens: %d tokens, %d bytes, %v; want %d bytes", cut.tokens, len(s), nb, err, cut.bytes)
		}
	}
	if _, _, err := c.Stream(tok, dom, SplitTrain, 0); err == nil {
		t.Error("a stream of 0 tokens: no error")
	}
}
