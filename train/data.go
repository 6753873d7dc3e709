package train

import (
	"fmt"
	"math/rand/v2"

	"github.com/chameleon-llm/chameleon/data"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// Dataset is a corpus as GPT-2 token streams. Each stream is its documents,
// in the corpus's file order, each followed by <|endoftext|>: the model
// learns across document boundaries the way GPT-2 was trained, and sees the
// separator as the start of a new document.
type Dataset struct {
	Train   []int32            // every domain's train split, domains in corpus order
	Val     map[string][]int32 // validation stream of each domain
	Domains []string           // the pretraining domains, in corpus order
	EOT     int32
}

// LoadCorpus reads the train split of every pretraining domain (mixed into
// one stream) and each such domain's validation split from a built corpus
// dir, tokenized with tok. The adapt and heldout domains are never read:
// the base model must not see them.
func LoadCorpus(dir string, tok *tokenizer.Tokenizer) (*Dataset, error) {
	c, err := data.Open(dir)
	if err != nil {
		return nil, err
	}
	ds := &Dataset{Val: map[string][]int32{}, Domains: c.DomainsWithRole(data.RolePretrain), EOT: tok.EOT()}
	for _, dom := range ds.Domains {
		for d, err := range c.All(dom, "train") {
			if err != nil {
				return nil, err
			}
			ds.Train = append(tok.AppendEncode(ds.Train, d.Text), ds.EOT)
		}
		var val []int32
		for d, err := range c.All(dom, "validation") {
			if err != nil {
				return nil, err
			}
			val = append(tok.AppendEncode(val, d.Text), ds.EOT)
		}
		ds.Val[dom] = val
	}
	if len(ds.Train) < 2 {
		return nil, fmt.Errorf("train: corpus %s has no training text", dir)
	}
	return ds, nil
}

// Sampler draws training batches from a token stream: each sequence is a
// window of T+1 consecutive tokens starting at a uniformly random offset
// (inputs the first T, targets the last T), so domains are weighted by their
// token counts. The generator is a PCG whose state is saved in checkpoints:
// the k-th batch depends only on the seed and k.
type Sampler struct {
	stream []int32
	b, t   int
	pcg    *rand.PCG
	rng    *rand.Rand
}

// NewSampler returns a sampler of batches of b windows of t tokens seeded
// with seed. The stream must hold at least t+1 tokens.
func NewSampler(stream []int32, b, t int, seed uint64) (*Sampler, error) {
	if len(stream) < t+1 {
		return nil, fmt.Errorf("train: a stream of %d tokens is too short for sequences of %d", len(stream), t)
	}
	pcg := rand.NewPCG(seed, 0x9e3779b97f4a7c15)
	return &Sampler{stream: stream, b: b, t: t, pcg: pcg, rng: rand.New(pcg)}, nil
}

// Next returns the next batch.
func (s *Sampler) Next() Batch {
	var bt Batch
	for i := 0; i < s.b; i++ {
		o := s.rng.IntN(len(s.stream) - s.t)
		w := s.stream[o : o+s.t+1]
		bt.Tokens = append(bt.Tokens, append([]int32(nil), w[:s.t]...))
		bt.Targets = append(bt.Targets, append([]int32(nil), w[1:]...))
	}
	return bt
}

// State is the generator's state (for checkpoints).
func (s *Sampler) State() ([]byte, error) { return s.pcg.MarshalBinary() }

// SetState restores a State.
func (s *Sampler) SetState(b []byte) error { return s.pcg.UnmarshalBinary(b) }

// EvalBatches cuts a stream into consecutive windows of up to t+1 tokens
// (non-overlapping predictions: window k predicts tokens k*t+1..(k+1)*t),
// covering at most maxTokens predicted tokens, grouped into batches of b.
// The last window may be shorter (a ragged batch).
func EvalBatches(stream []int32, b, t, maxTokens int) []Batch {
	var out []Batch
	var cur Batch
	for o := 0; o+1 < len(stream) && o < maxTokens; o += t {
		end := min(o+t+1, len(stream))
		w := stream[o:end]
		cur.Tokens = append(cur.Tokens, w[:len(w)-1])
		cur.Targets = append(cur.Targets, w[1:])
		if len(cur.Tokens) == b {
			out = append(out, cur)
			cur = Batch{}
		}
	}
	if len(cur.Tokens) > 0 {
		out = append(out, cur)
	}
	return out
}
