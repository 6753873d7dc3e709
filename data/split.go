package data

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
)

// The three splits, in file order.
const (
	SplitTrain      = "train"
	SplitValidation = "validation"
	SplitTest       = "test"
)

// Splits lists the splits in order.
var Splits = []string{SplitTrain, SplitValidation, SplitTest}

// hash64 is the first 8 bytes of SHA-256 of the joined parts.
func hash64(parts ...string) uint64 {
	s := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return binary.BigEndian.Uint64(s[:8])
}

// SplitOf assigns a document to a split by a hash of its domain and id, so
// a document's split never depends on which other documents exist.
func SplitOf(seed uint64, domain, id string, validationPercent, testPercent int) string {
	p := int(hash64("split", fmt.Sprint(seed), domain, id) % 100)
	switch {
	case p < 100-validationPercent-testPercent:
		return SplitTrain
	case p < 100-testPercent:
		return SplitValidation
	}
	return SplitTest
}

// splitSpec is how one domain is split and capped.
type splitSpec struct {
	maxTrain         int64
	validation, test int // percent
}

// specOf returns the split parameters of a domain's role: the pretraining
// domains use MaxTrainBytes, ValidationPercent and TestPercent, the others
// their Adapt* counterparts.
func (o *Options) specOf(domain string) splitSpec {
	if DomainRole(domain) == RolePretrain {
		return splitSpec{o.MaxTrainBytes, o.ValidationPercent, o.TestPercent}
	}
	return splitSpec{o.AdaptMaxTrainBytes, o.AdaptValidationPercent, o.AdaptTestPercent}
}

// caps returns the byte cap of each split (-1: none): validation and test
// get the same share of the train cap as of the whole.
func (s splitSpec) caps() map[string]int64 {
	if s.maxTrain < 0 {
		return map[string]int64{SplitTrain: -1, SplitValidation: -1, SplitTest: -1}
	}
	trainPct := int64(100 - s.validation - s.test)
	return map[string]int64{
		SplitTrain:      s.maxTrain,
		SplitValidation: s.maxTrain * int64(s.validation) / trainPct,
		SplitTest:       s.maxTrain * int64(s.test) / trainPct,
	}
}

// dedupeSplit removes from docs (in order) every record whose sampled
// shingles are at least o.CrossSplitShared in refs or in prev, and returns
// the kept records and what it did. The shared figure after removal counts
// against refs only (the train reference).
func (o *Options) dedupeSplit(split string, docs []Doc, refs []shingleIndex, prev shingleIndex) ([]Doc, []SplitDedupe, error) {
	st := SplitDedupe{Split: split}
	all := append(refs[:len(refs):len(refs)], prev)
	kept := docs[:0:0]
	var sh []uint64
	for _, d := range docs {
		sh = Shingles(sh, d.Text)
		if len(sh) > 0 && float64(shared(sh, all...)) >= o.CrossSplitShared*float64(len(sh)) {
			st.Removed++
			st.RemovedBytes += int64(len(d.Text))
			continue
		}
		kept = append(kept, d)
		st.Shingles += int64(len(sh))
		st.Shared += int64(shared(sh, refs...))
	}
	if st.Shingles > 0 {
		st.SharedTrain = float64(st.Shared) / float64(st.Shingles)
	}
	return kept, []SplitDedupe{st}, nil
}

func texts(docs []Doc) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.Text
	}
	return out
}
