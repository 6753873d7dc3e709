package model

// Size checks of a config against the file it describes.
//
// A config (config.json, GGUF metadata) states sizes that the loader turns
// into a tensor list, and a corrupt or hostile one can state any size: a
// 23 MB checkpoint whose config.json says n_layer = 2,000,000 would have the
// loader build 24 million tensor entries before it found that the file holds
// 150. CheckFits compares what the sizes imply (how many tensors, how many
// bytes at the narrowest element width the loader accepts) with what the
// file holds, without building anything proportional to the sizes, so a
// loader calls it after parsing the header and before TensorSpec.
//
// It knows nothing of GPT-2: an architecture describes its tensors as
// TensorGroups, which a weight table derives from its rows (Table.groups;
// gpt2Groups below), so a Llama-family loader gets its own from its table.

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
)

// Dim is one size an architecture's config states, with the key it was read
// from ("n_layer", "gpt2.block_count"). A Dim with an empty Key is a
// constant factor (the 3 of a fused QKV projection).
type Dim struct {
	Key string
	N   int
}

// TensorGroup is a set of tensors a config implies: one copy of Tensors for
// each of Repeat.N (the layers), or a single copy when Repeat.Key is empty.
// Each tensor is given by the factors of its element count, which are its
// dims for a plain tensor (the order does not matter).
type TensorGroup struct {
	Name    string  // for messages: "wte.weight", "each layer"
	Repeat  Dim     // copies of the group; Dim{} is one
	Tensors [][]Dim // per tensor, the factors of its element count
}

// FileCapacity is what a checkpoint file holds, from its validated header.
type FileCapacity struct {
	Tensors     int   // tensor entries in the header
	DataBytes   int64 // bytes after the header, where the tensor data lies
	ElementBits int64 // the fewest bits per element any accepted dtype takes (16 for F16/BF16)
}

// SizeError reports sizes from a config or header that imply more than the
// file holds.
type SizeError struct {
	Keys    []string // the config keys at fault, e.g. ["n_layer"]
	Sizes   string   // the sizes as stated: "n_layer = 2000000"
	Implies string   // what they imply: "12 tensors per layer"
	Need    int64    // tensors or bytes implied (saturated at MaxInt64)
	Have    int64    // tensors or bytes the file holds
	Unit    string   // "tensors" or "bytes"
}

func (e *SizeError) Error() string {
	need := fmt.Sprint(e.Need)
	if e.Need == math.MaxInt64 {
		need = "more than 2^63"
	}
	return fmt.Sprintf("%s cannot be right: it implies %s, at least %s %s, but the file holds %d %s",
		e.Sizes, e.Implies, need, e.Unit, e.Have, e.Unit)
}

// slackTensors is how many tensors beyond twice the file's CheckFits lets
// through.
const slackTensors = 64

// satMul returns a*b, or MaxInt64 if that overflows; a, b >= 0.
func satMul(a, b int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(lo)
}

// satAdd returns a+b, or MaxInt64 if that overflows; a, b >= 0.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// describe formats the non-constant dims as "k1 = v1, k2 = v2", each key
// once, and lists their keys.
func describe(dims ...Dim) (string, []string) {
	var parts, keys []string
	seen := map[string]bool{}
	for _, d := range dims {
		if d.Key == "" || seen[d.Key] {
			continue
		}
		seen[d.Key] = true
		keys = append(keys, d.Key)
		parts = append(parts, fmt.Sprintf("%s = %d", d.Key, d.N))
	}
	return strings.Join(parts, ", "), keys
}

// CheckFits returns a *SizeError if the groups cannot fit in the file: if
// they imply more tensors than its header lists, or if one tensor, one group
// or all of them together need more bytes than its data section has at
// file.ElementBits per element. A negative size is an error too. It
// allocates nothing proportional to the sizes. Checks go from the most
// specific to the total, so the error names the sizes most likely at fault.
//
// It is a bound, not an exact match: up to twice what the file holds (plus
// slackTensors tensors) passes, so that a near miss, such as one tensor
// missing or one layer too many, reaches the loader's per-tensor checks,
// which name the tensor; what it refuses is out of all proportion to the
// file, and what it passes keeps the loader's work proportional to it.
func CheckFits(groups []TensorGroup, file FileCapacity) error {
	for _, g := range groups {
		for _, d := range append([]Dim{g.Repeat}, concat(g.Tensors)...) {
			if d.N < 0 {
				return fmt.Errorf("%s = %d is negative", d.Key, d.N)
			}
		}
	}
	repeat := func(g TensorGroup) int64 {
		if g.Repeat.Key == "" {
			return 1
		}
		return int64(g.Repeat.N)
	}
	bytesOf := func(factors []Dim) int64 {
		n := int64(1)
		for _, d := range factors {
			n = satMul(n, int64(d.N))
		}
		b := satMul(n, file.ElementBits)
		if b == math.MaxInt64 {
			return b
		}
		return (b + 7) / 8
	}
	have := int64(file.Tensors)
	maxTensors := satAdd(satMul(have, 2), slackTensors)
	maxBytes := satMul(file.DataBytes, 2)
	var totalTensors, totalBytes int64
	var all []Dim
	for _, g := range groups {
		need := satMul(repeat(g), int64(len(g.Tensors)))
		if g.Repeat.Key != "" && need > maxTensors {
			s, keys := describe(g.Repeat)
			return &SizeError{Keys: keys, Sizes: s, Implies: fmt.Sprintf("%d tensors for %s", len(g.Tensors), g.Name),
				Need: need, Have: have, Unit: "tensors"}
		}
		totalTensors = satAdd(totalTensors, need)
		all = append(all, g.Repeat)
		all = append(all, concat(g.Tensors)...)
	}
	if totalTensors > maxTensors {
		s, keys := describe(all...)
		return &SizeError{Keys: keys, Sizes: s, Implies: "the architecture's tensors", Need: totalTensors, Have: have, Unit: "tensors"}
	}
	for _, g := range groups {
		var one int64
		for _, t := range g.Tensors {
			b := bytesOf(t)
			if b > maxBytes {
				s, keys := describe(t...)
				return &SizeError{Keys: keys, Sizes: s, Implies: fmt.Sprintf("a tensor of %s in %s at %d bits per element", factorString(t), g.Name, file.ElementBits),
					Need: b, Have: file.DataBytes, Unit: "bytes"}
			}
			one = satAdd(one, b)
		}
		need := satMul(one, repeat(g))
		if need > maxBytes {
			s, keys := describe(append([]Dim{g.Repeat}, concat(g.Tensors)...)...)
			return &SizeError{Keys: keys, Sizes: s, Implies: fmt.Sprintf("the tensors of %s", g.Name), Need: need, Have: file.DataBytes, Unit: "bytes"}
		}
		totalBytes = satAdd(totalBytes, need)
	}
	if totalBytes > maxBytes {
		s, keys := describe(all...)
		return &SizeError{Keys: keys, Sizes: s, Implies: "the architecture's tensors", Need: totalBytes, Have: file.DataBytes, Unit: "bytes"}
	}
	return nil
}

func concat(tensors [][]Dim) []Dim {
	var out []Dim
	for _, t := range tensors {
		out = append(out, t...)
	}
	return out
}

// factorString formats factors as "n_vocab x n_embd" with constants inline.
func factorString(factors []Dim) string {
	parts := make([]string, len(factors))
	for i, d := range factors {
		if d.Key == "" {
			parts[i] = fmt.Sprint(d.N)
		} else {
			parts[i] = d.Key
		}
	}
	return strings.Join(parts, " x ")
}

// gpt2Keys name GPT-2's sizes (the letters of its table's shapes, and L for
// the block count) as a checkpoint format states them.
type gpt2Keys map[string]string

var (
	hfKeys   = gpt2Keys{"V": "vocab_size", "P": "n_positions", "C": "n_embd", "L": "n_layer"}
	ggufKeys = gpt2Keys{"V": "token_embd.weight rows", "P": ggufKeyCtx, "C": ggufKeyEmbd, "L": ggufKeyBlocks}
)

// gpt2Groups describes TensorSpec(cfg) for CheckFits without building it.
func gpt2Groups(cfg Config, k gpt2Keys) []TensorGroup {
	return gpt2Table.groups(cfg.sizes(), cfg.NLayer, k)
}
