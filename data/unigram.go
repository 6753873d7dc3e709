package data

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// Unigram is a unigram model of token ids with add-one smoothing, the
// baseline a language model's perplexity is read against (`chameleon
// card`): p(id) = (count(id) + 1) / (total + V) over a vocabulary of V ids.
type Unigram struct {
	counts []float64 // counts[id]: occurrences of id in what was added
	total  float64   // the sum of counts
}

// NewUnigram returns a model over a vocabulary of v ids that has seen
// nothing yet (every id equally likely).
func NewUnigram(v int) (*Unigram, error) {
	if v < 1 {
		return nil, fmt.Errorf("data: unigram over a vocabulary of %d ids", v)
	}
	return &Unigram{counts: make([]float64, v)}, nil
}

// Add counts the ids of a token stream. An id outside the vocabulary is an
// error, and then nothing of ids is counted.
func (u *Unigram) Add(ids []int32) error {
	if err := u.check(ids); err != nil {
		return err
	}
	for _, id := range ids {
		u.counts[id]++
	}
	u.total += float64(len(ids))
	return nil
}

// Prob is the smoothed probability of id (which must be in the vocabulary).
func (u *Unigram) Prob(id int32) float64 {
	return (u.counts[id] + 1) / (u.total + float64(len(u.counts)))
}

// Perplexity is exp of the mean negative log probability of ids. An empty
// stream or an id outside the vocabulary is an error.
func (u *Unigram) Perplexity(ids []int32) (float64, error) {
	if len(ids) == 0 {
		return 0, fmt.Errorf("data: unigram perplexity of an empty stream")
	}
	if err := u.check(ids); err != nil {
		return 0, err
	}
	var nll float64
	for _, id := range ids {
		nll -= math.Log(u.Prob(id))
	}
	return math.Exp(nll / float64(len(ids))), nil
}

func (u *Unigram) check(ids []int32) error {
	for i, id := range ids {
		if id < 0 || int(id) >= len(u.counts) {
			return fmt.Errorf("data: unigram: token %d is id %d, outside the vocabulary of %d", i, id, len(u.counts))
		}
	}
	return nil
}

// FitUnigram fits a unigram model over a vocabulary of v ids on the train
// split of c's pretraining domains, each document encoded by tok and
// followed by <|endoftext|> (as the documents of a stream are joined).
func FitUnigram(c *Corpus, tok *tokenizer.Tokenizer, v int) (*Unigram, error) {
	u, err := NewUnigram(v)
	if err != nil {
		return nil, err
	}
	var buf []int32
	for _, dom := range c.DomainsWithRole(RolePretrain) {
		for d, err := range c.All(dom, SplitTrain) {
			if err != nil {
				return nil, err
			}
			buf = append(tok.AppendEncode(buf[:0], d.Text), tok.EOT())
			if err := u.Add(buf); err != nil {
				return nil, fmt.Errorf("data: %s %s %s: %w", dom, SplitTrain, d.ID, err)
			}
		}
	}
	return u, nil
}

// Stream is the first maxTokens tokens of a domain's split, its documents
// encoded by tok and joined by <|endoftext|> (one after each), and the
// bytes of text those tokens cover.
func (c *Corpus) Stream(tok *tokenizer.Tokenizer, domain, split string, maxTokens int) ([]int32, int, error) {
	if maxTokens < 1 {
		return nil, 0, fmt.Errorf("data: a stream of %d tokens", maxTokens)
	}
	var stream []int32
	nbytes := 0
	for d, err := range c.All(domain, split) {
		if err != nil {
			return nil, 0, err
		}
		if len(stream) >= maxTokens {
			break
		}
		stream = append(tok.AppendEncode(stream, d.Text), tok.EOT())
		nbytes += len(d.Text)
	}
	if len(stream) > maxTokens {
		// Count only the scored text's bytes (an <|endoftext|> covers none).
		stream, nbytes = stream[:maxTokens], 0
		for _, id := range stream {
			if id != tok.EOT() {
				nbytes += len(tok.TokenBytes(id))
			}
		}
	}
	return stream, nbytes, nil
}
