package data

import "slices"

// Near-duplicate detection by shingles: a shingle is a window of
// ShingleBytes consecutive bytes of a text. Every window's polynomial
// rolling hash is mixed (SplitMix64's finaliser) and kept when the mixed
// value is 0 mod ShingleSample, so which windows are kept depends on their
// content only, not on their offset: a text copied with an edit, or moved
// within another, keeps the same sample of shingles. A document's
// "shared fraction" against an index is the share of its distinct sampled
// shingles that the index holds.
const (
	ShingleBytes  = 64
	ShingleSample = 8
)

const shingleBase = 0x100000001b3 // FNV's 64-bit prime as the polynomial's base

// shingleBaseTop is shingleBase^(ShingleBytes-1) mod 2^64, the weight of the
// byte that leaves the window.
var shingleBaseTop = func() uint64 {
	p := uint64(1)
	for range ShingleBytes - 1 {
		p *= shingleBase
	}
	return p
}()

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Shingles appends the sorted, distinct sampled shingle hashes of s to
// dst[:0] and returns it. A text shorter than ShingleBytes has none.
func Shingles(dst []uint64, s string) []uint64 {
	dst = dst[:0]
	if len(s) < ShingleBytes {
		return dst
	}
	var h uint64
	for i := range ShingleBytes {
		h = h*shingleBase + uint64(s[i])
	}
	for i := ShingleBytes; ; i++ {
		if m := mix64(h); m%ShingleSample == 0 {
			dst = append(dst, m)
		}
		if i == len(s) {
			break
		}
		h = (h-uint64(s[i-ShingleBytes])*shingleBaseTop)*shingleBase + uint64(s[i])
	}
	slices.Sort(dst)
	return slices.Compact(dst)
}

// shingleIndex is a sorted set of shingle hashes.
type shingleIndex []uint64

// newShingleIndex returns the union of the sampled shingles of texts.
func newShingleIndex(texts []string) shingleIndex {
	var all, buf []uint64
	for _, t := range texts {
		buf = Shingles(buf, t)
		all = append(all, buf...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

func (x shingleIndex) has(h uint64) bool {
	_, ok := slices.BinarySearch(x, h)
	return ok
}

// shared counts the shingles of sh that any of the indexes holds.
func shared(sh []uint64, idx ...shingleIndex) int {
	n := 0
	for _, h := range sh {
		for _, x := range idx {
			if x.has(h) {
				n++
				break
			}
		}
	}
	return n
}
