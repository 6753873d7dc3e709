package tokenizer

import (
	"container/heap"
	"fmt"
	"iter"
)

// TrainBPE learns a byte-level BPE vocabulary of vocabSize tokens from texts,
// the way GPT-2's was learned: every text is cut into pre-tokens by GPT-2's
// pattern, each pre-token starts as one token per byte (ids 0..255 are the
// bytes themselves), and the most frequent adjacent pair over all
// pre-tokens (weighted by their counts) is merged into a new token, again and
// again, until the vocabulary has vocabSize-1 tokens; EndOfText is the last
// id. Ties go to the pair with the smaller ids, so the result is a pure
// function of the texts and vocabSize. Pairs seen fewer than minCount times
// are never merged (training stops early instead, leaving a smaller
// vocabulary).
//
// The tokenizer writes and loads as GPT-2's encoder.json and vocab.bpe, and
// encodes with the same merge rule as GPT-2's own (lowest rank first).
func TrainBPE(texts iter.Seq[string], vocabSize, minCount int) (*Tokenizer, error) {
	if vocabSize < 257 {
		return nil, fmt.Errorf("model: TrainBPE: a vocabulary of %d tokens cannot hold the 256 bytes and %s", vocabSize, EndOfText)
	}
	minCount = max(minCount, 1)

	// Count distinct pre-tokens.
	counts := map[string]int64{}
	var pieces []string
	for s := range texts {
		pieces = appendPieces(pieces[:0], s)
		for _, p := range pieces {
			counts[p]++
		}
	}
	b := &bpeTrainer{where: map[uint64][]int32{}, pairs: map[uint64]int64{}}
	for p, n := range counts {
		if len(p) < 2 {
			continue // a single byte has no pair
		}
		ids := make([]int32, len(p))
		for i := 0; i < len(p); i++ {
			ids[i] = int32(p[i])
		}
		b.words = append(b.words, bpeWord{ids: ids, n: n})
	}
	for wi := range b.words {
		b.add(int32(wi), +1)
	}
	for k := range b.pairs {
		heap.Push(&b.heap, pairCount{k, b.pairs[k]})
	}

	v := &vocab{merges: map[uint64]merge{}}
	ids := map[string]int32{}
	for i := 0; i < 256; i++ {
		v.tokens = append(v.tokens, string([]byte{byte(i)}))
		v.byteID[i] = int32(i)
		ids[v.tokens[i]] = int32(i)
	}
	for len(v.tokens) < vocabSize-1 {
		k, n, ok := b.best()
		if !ok || n < int64(minCount) {
			break
		}
		left, right := int32(k>>32), int32(uint32(k))
		text := v.tokens[left] + v.tokens[right]
		id, seen := ids[text]
		if !seen {
			id = int32(len(v.tokens))
			v.tokens = append(v.tokens, text)
			ids[text] = id
		}
		v.merges[k] = merge{rank: int32(len(v.merges)), id: id}
		b.merge(k, id)
	}
	v.eot = int32(len(v.tokens))
	v.tokens = append(v.tokens, EndOfText)
	return newTokenizer(v), nil
}

// bpeWord is a distinct pre-token as its current tokens, with its count.
type bpeWord struct {
	ids []int32
	n   int64
}

// bpeTrainer holds the pair statistics of BPE training: the weighted count
// of every adjacent pair, the words each pair may occur in (a superset: a
// word stays listed after its pair is merged away), and a max-heap of
// (pair, count) with stale entries skipped on pop.
type bpeTrainer struct {
	words []bpeWord
	pairs map[uint64]int64
	where map[uint64][]int32
	heap  pairHeap
	stamp []int32 // per word: the last merge that visited it (dedupes where)
	step  int32
}

// add adds (sign +1) or removes (-1) word wi's pairs from the counts; on
// add it also records the word under each pair.
func (b *bpeTrainer) add(wi int32, sign int64) {
	w := b.words[wi]
	for i := 0; i+1 < len(w.ids); i++ {
		k := pairKey(w.ids[i], w.ids[i+1])
		b.pairs[k] += sign * w.n
		if sign > 0 {
			b.where[k] = append(b.where[k], wi)
		}
	}
}

// best pops the most frequent pair, skipping stale heap entries.
func (b *bpeTrainer) best() (uint64, int64, bool) {
	for b.heap.Len() > 0 {
		top := heap.Pop(&b.heap).(pairCount)
		if n := b.pairs[top.key]; n == top.n && n > 0 {
			return top.key, n, true
		}
	}
	return 0, 0, false
}

// merge replaces every occurrence of pair k (left to right, as encoding
// does) with id in the words that hold it, and updates the counts.
func (b *bpeTrainer) merge(k uint64, id int32) {
	if b.stamp == nil {
		b.stamp = make([]int32, len(b.words))
	}
	b.step++
	left, right := int32(k>>32), int32(uint32(k))
	changed := map[uint64]bool{}
	for _, wi := range b.where[k] {
		if b.stamp[wi] == b.step {
			continue
		}
		b.stamp[wi] = b.step
		w := &b.words[wi]
		found := false
		for i := 0; i+1 < len(w.ids); i++ {
			if w.ids[i] == left && w.ids[i+1] == right {
				found = true
				break
			}
		}
		if !found {
			continue
		}
		for i := 0; i+1 < len(w.ids); i++ {
			changed[pairKey(w.ids[i], w.ids[i+1])] = true
		}
		b.add(wi, -1)
		out := w.ids[:0]
		for i := 0; i < len(w.ids); i++ {
			if i+1 < len(w.ids) && w.ids[i] == left && w.ids[i+1] == right {
				out = append(out, id)
				i++
			} else {
				out = append(out, w.ids[i])
			}
		}
		w.ids = out
		b.add(wi, +1)
		for i := 0; i+1 < len(w.ids); i++ {
			changed[pairKey(w.ids[i], w.ids[i+1])] = true
		}
	}
	delete(b.where, k)
	for c := range changed {
		if n := b.pairs[c]; n > 0 {
			heap.Push(&b.heap, pairCount{c, n})
		} else {
			delete(b.pairs, c)
		}
	}
}

type pairCount struct {
	key uint64
	n   int64
}

// pairHeap is a max-heap by count, then by smaller (left, right) ids.
type pairHeap []pairCount

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].n != h[j].n {
		return h[i].n > h[j].n
	}
	return h[i].key < h[j].key
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairCount)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
