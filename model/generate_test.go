package model

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// TestStopStream: generation's stop strings (StopText), streamed pieces
// adding up to the final text.
func TestStopStream(t *testing.T) {
	for _, c := range []struct {
		pieces []string
		stops  []string
		text   string
		hit    bool
	}{
		{[]string{"hel", "lo wo", "rld"}, nil, "hello world", false},
		{[]string{"hel", "lo\n", "\nmore"}, []string{"\n\n"}, "hello", true},
		{[]string{"a", "b", "c", "d"}, []string{"bc"}, "a", true},
		{[]string{"ab", "x"}, []string{"bc"}, "abx", false},
		{[]string{"END"}, []string{"E", "END"}, "", true},
	} {
		var streamed []byte
		s := NewStopText(c.stops)
		emit := func(final bool) {
			from, to := s.Release(final)
			streamed = append(streamed, s.Text()[from:to]...)
		}
		hit := false
		for _, p := range c.pieces {
			if s.Add([]byte(p)) {
				hit = true
				break
			}
			emit(false)
		}
		emit(true)
		if hit != c.hit || string(s.Text()) != c.text || !bytes.Equal(streamed, s.Text()) {
			t.Errorf("%q stops %q: text %q streamed %q hit %v; want %q hit %v", c.pieces, c.stops, s.Text(), streamed, hit, c.text, c.hit)
		}
	}
}

func generateAll(t *testing.T, m *Model, tok *tokenizer.Tokenizer, prompts [][]int32, opt GenerateOptions) []Generation {
	t.Helper()
	g, err := m.Generate(tok, prompts, opt)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGenerateBackendsAndBatching: greedy and seeded sampled generation
// give the same tokens on the WebGPU and reference backends, and each
// sequence of a batch equals the same prompt generated alone.
func TestGenerateBackendsAndBatching(t *testing.T) {
	tok, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	cfg := testConfigs[2]
	prompts := randomTokens(rng, []int{5, 1, 12}, cfg.VocabSize)
	for _, sp := range []gpu.SampleParams{{}, {Temperature: 0.9, TopK: 20, TopP: 0.9}} {
		t.Run(fmt.Sprintf("T=%g", sp.Temperature), func(t *testing.T) {
			opt := GenerateOptions{MaxTokens: 8, Sample: sp, Seed: seed}
			var streamed [3][]byte
			opt.OnText = func(i int, b []byte) { streamed[i] = append(streamed[i], b...) }
			mg := newModel(t, w, cfg, seed, gpu.F32)
			got := generateAll(t, mg, tok, prompts, opt)
			opt.OnText = nil
			want := generateAll(t, newModel(t, ref.New(), cfg, seed, gpu.F32), tok, prompts, opt)
			for i := range prompts {
				if !bytes.Equal(streamed[i], got[i].Text) {
					t.Errorf("sequence %d: streamed %q, final %q", i, streamed[i], got[i].Text)
				}
				if got[i].Finish != "length" || len(got[i].Tokens) != 8 {
					t.Errorf("sequence %d: finish %q after %d tokens", i, got[i].Finish, len(got[i].Tokens))
				}
				// Sampling draws equal ids unless a uniform lands on a
				// rounding boundary; greedy must match exactly.
				if sp.Temperature == 0 && !slices.Equal(got[i].Tokens, want[i].Tokens) {
					t.Errorf("greedy sequence %d: webgpu %v, reference %v", i, got[i].Tokens, want[i].Tokens)
				}
				one := opt
				one.Seeds = []uint64{seed + uint64(i)}
				alone := generateAll(t, mg, tok, prompts[i:i+1], one)
				if !slices.Equal(alone[0].Tokens, got[i].Tokens) {
					t.Errorf("sequence %d alone %v, in the batch %v", i, alone[0].Tokens, got[i].Tokens)
				}
			}
		})
	}
}

func TestGenerateRejectsBadInput(t *testing.T) {
	tok, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfigs[0]
	m := newModel(t, ref.New(), cfg, 1, gpu.F32)
	opt := GenerateOptions{MaxTokens: 2}
	if _, err := m.Generate(tok, [][]int32{{}}, opt); err == nil {
		t.Error("empty prompt accepted")
	}
	if _, err := m.Generate(tok, [][]int32{make([]int32, cfg.NCtx+1)}, opt); err == nil {
		t.Error("prompt over the context accepted")
	}
	if _, err := m.Generate(tok, [][]int32{{1}}, GenerateOptions{}); err == nil {
		t.Error("zero max tokens accepted")
	}
	nan := float32(math.NaN())
	for _, s := range []gpu.SampleParams{{Temperature: nan, TopP: 1}, {Temperature: float32(math.Inf(1)), TopP: 1}, {Temperature: 1, TopP: nan}} {
		if _, err := m.Generate(tok, [][]int32{{1}}, GenerateOptions{MaxTokens: 1, Sample: s}); err == nil {
			t.Errorf("sampling %+v accepted", s)
		}
	}
	// A limit near the largest int stops at the context, not at an
	// overflowed cache length.
	if g, err := m.Generate(tok, [][]int32{{1, 2}}, GenerateOptions{MaxTokens: math.MaxInt}); err != nil {
		t.Errorf("max tokens MaxInt: %v", err)
	} else if g[0].Finish != "context" || len(g[0].Tokens) != cfg.NCtx-1 {
		t.Errorf("max tokens MaxInt: finish %q after %d tokens, want context after %d", g[0].Finish, len(g[0].Tokens), cfg.NCtx-1)
	}
	g, err := m.Generate(tok, [][]int32{make([]int32, cfg.NCtx-2)}, GenerateOptions{MaxTokens: 10})
	// Positions NCtx-2 and NCtx-1 are fed back; the token predicted at the
	// last position is returned but cannot be fed: 3 tokens in all.
	if err != nil || g[0].Finish != "context" || len(g[0].Tokens) != 3 {
		t.Errorf("generation at the end of the context: %+v %v", g, err)
	}
}

// TestGenerateCancel: a Cancel that turns true on its (n+1)th call stops
// every sequence after n tokens with Finish "cancelled", the prefix of an
// uncancelled run, its text streamed in full; no error.
func TestGenerateCancel(t *testing.T) {
	tok, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfigs[0]
	m := newModel(t, ref.New(), cfg, 5, gpu.F32)
	prompts := randomTokens(rand.New(rand.NewPCG(5, 1)), []int{3, 7}, cfg.VocabSize)
	opt := GenerateOptions{MaxTokens: 6, Sample: gpu.SampleParams{Temperature: 0.8, TopP: 1}, Seed: 9}
	full := generateAll(t, m, tok, prompts, opt)
	for n := 0; n <= 7; n++ {
		calls := 0
		o := opt
		o.Cancel = func() bool { calls++; return calls > n }
		var streamed [2][]byte
		o.OnText = func(i int, b []byte) { streamed[i] = append(streamed[i], b...) }
		got := generateAll(t, m, tok, prompts, o)
		want, finish, wantCalls := min(n, opt.MaxTokens), "cancelled", n+1
		if n >= opt.MaxTokens {
			finish, wantCalls = "length", opt.MaxTokens
		}
		if calls != wantCalls {
			t.Errorf("cancel after %d: Cancel called %d times, want %d", n, calls, wantCalls)
		}
		for i, g := range got {
			if g.Finish != finish || len(g.Tokens) != want || !slices.Equal(g.Tokens, full[i].Tokens[:want]) {
				t.Errorf("cancel after %d, sequence %d: finish %q tokens %v; want %q and the first %d of %v", n, i, g.Finish, g.Tokens, finish, want, full[i].Tokens)
			}
			if !bytes.Equal(streamed[i], g.Text) || !bytes.HasPrefix(full[i].Text, g.Text) {
				t.Errorf("cancel after %d, sequence %d: streamed %q, text %q, uncancelled %q", n, i, streamed[i], g.Text, full[i].Text)
			}
		}
	}
}
