package tokenizer

// This file holds the merge step of byte-level BPE: a pre-token starts as
// one symbol per byte and the adjacent pair with the lowest merge rank is
// merged, the leftmost one on ties, until no adjacent pair has a rank.
//
// That rule is both GPT-2's (bpe() in its encoder.py merges every occurrence
// of the best pair left to right; with a learned merge list no new pair of
// lower rank can appear in between, so it equals merging the leftmost best
// pair one at a time) and tiktoken's (its pair rank is the rank of the
// concatenated bytes).

// merge is the result of merging one adjacent pair of tokens.
type merge struct {
	rank int32 // lower merges first
	id   int32 // the merged token
}

// pairKey packs an adjacent pair of token ids (left, right) into a map key.
func pairKey(left, right int32) uint64 {
	return uint64(uint32(left))<<32 | uint64(uint32(right))
}

// noRank marks a pair that does not merge.
const noRank = int32(1<<31 - 1)

// quadraticMaxLen is the longest pre-token merged by the simple O(n^2)
// scan; longer ones use the heap, O(n log n).
const quadraticMaxLen = 48

// appendBPE appends the ids that piece (len >= 1) merges into to dst.
func (v *vocab) appendBPE(dst []int32, piece string) []int32 {
	if len(piece) == 1 {
		return append(dst, v.byteID[piece[0]])
	}
	if len(piece) <= quadraticMaxLen {
		return v.appendBPEQuadratic(dst, piece)
	}
	return v.appendBPEHeap(dst, piece)
}

func (v *vocab) pairMerge(left, right int32) merge {
	if m, ok := v.merges[pairKey(left, right)]; ok {
		return m
	}
	return merge{rank: noRank, id: -1}
}

// appendBPEQuadratic merges piece with a linear scan for the best pair per
// merge; fast for the short pieces that make up almost all text.
func (v *vocab) appendBPEQuadratic(dst []int32, piece string) []int32 {
	var symBuf [quadraticMaxLen]int32
	var pairBuf [quadraticMaxLen]merge
	n := len(piece)
	syms := symBuf[:0]
	if n > quadraticMaxLen {
		syms = make([]int32, 0, n)
	}
	for i := 0; i < n; i++ {
		syms = append(syms, v.byteID[piece[i]])
	}
	// pairs[i] is the merge of syms[i] and syms[i+1].
	pairs := pairBuf[:0]
	if n > quadraticMaxLen {
		pairs = make([]merge, 0, n)
	}
	for i := 0; i+1 < n; i++ {
		pairs = append(pairs, v.pairMerge(syms[i], syms[i+1]))
	}
	for len(syms) > 1 {
		best := -1
		for i, p := range pairs {
			if p.rank != noRank && (best < 0 || p.rank < pairs[best].rank) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		syms[best] = pairs[best].id
		syms = append(syms[:best+1], syms[best+2:]...)
		pairs = append(pairs[:best], pairs[best+1:]...)
		if best > 0 {
			pairs[best-1] = v.pairMerge(syms[best-1], syms[best])
		}
		if best < len(pairs) {
			pairs[best] = v.pairMerge(syms[best], syms[best+1])
		}
	}
	return append(dst, syms...)
}

// appendBPEHeap merges piece with a priority queue of candidate pairs and a
// linked list of symbols. A candidate is the key rank<<32 | left, where left
// is the byte offset of the pair's left symbol, so the smallest key is the
// lowest rank and, on ties, the leftmost pair. Candidates go stale when a
// neighbour merges; a popped one is used only if the pair now at left still
// has its rank (a rank names one merged token, so that pair is the same
// merge).
func (v *vocab) appendBPEHeap(dst []int32, piece string) []int32 {
	n := len(piece)
	ids := make([]int32, n)  // token at each live symbol, dead once merged away
	next := make([]int32, n) // next live symbol, n at the end
	prev := make([]int32, n) // previous live symbol, -1 at the start
	for i := 0; i < n; i++ {
		ids[i] = v.byteID[piece[i]]
		next[i] = int32(i + 1)
		prev[i] = int32(i - 1)
	}
	h := make([]uint64, 0, n)
	push := func(l int32) {
		m := v.pairMerge(ids[l], ids[next[l]])
		if m.rank == noRank {
			return
		}
		h = append(h, uint64(m.rank)<<32|uint64(l))
		for i := len(h) - 1; i > 0; {
			p := (i - 1) / 2
			if h[i] >= h[p] {
				break
			}
			h[i], h[p] = h[p], h[i]
			i = p
		}
	}
	pop := func() uint64 {
		top := h[0]
		last := len(h) - 1
		h[0] = h[last]
		h = h[:last]
		for i := 0; ; {
			l, r, m := 2*i+1, 2*i+2, i
			if l < len(h) && h[l] < h[m] {
				m = l
			}
			if r < len(h) && h[r] < h[m] {
				m = r
			}
			if m == i {
				break
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
		return top
	}
	for i := 0; i+1 < n; i++ {
		push(int32(i))
	}
	const dead = -1
	for len(h) > 0 {
		key := pop()
		rank, left := int32(key>>32), int32(uint32(key))
		right := next[left]
		if ids[left] == dead || int(right) >= n {
			continue
		}
		m := v.pairMerge(ids[left], ids[right])
		if m.rank != rank {
			continue // stale: a neighbour merged since this pair was pushed
		}
		ids[left] = m.id
		ids[right] = dead
		nr := next[right]
		next[left] = nr
		if int(nr) < n {
			prev[nr] = left
			push(left)
		}
		if pl := prev[left]; pl >= 0 {
			push(pl)
		}
	}
	for i := int32(0); int(i) < n; i = next[i] {
		dst = append(dst, ids[i])
	}
	return dst
}
