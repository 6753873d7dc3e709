package model

// Weight tables: a model family declares its tensors once.
//
// A family (GPT-2 in weights.go; Llama next, beside it) writes a Table: for
// each tensor, its Hugging Face and GGUF checkpoint names, its shape in terms
// of the config's sizes, its role (which fixes its dtype on the device and in
// files, and whether a quantized checkpoint quantizes it), how RandomInit
// fills it, and the field of the family's weight struct that holds it.
// Everything that walks a model's tensors reads that one table: TensorSpec
// and the loaders (names, shapes, orientation, buffers to skip), SaveHF and
// SaveGGUF, the quantizer (RoleMatrix), Upload, Free and Tensors (the fields),
// training's parameter list, the size checks (CheckFits groups), Params and
// RandomInit. A new family adds its own table and weight struct and touches
// neither GPT-2's nor this file.
//
// Order. A table expands to checkpoint order: the Pre rows, then the Layer
// rows of block 0, of block 1, ... of block L-1, then the Post rows. That is
// TensorSpec's order, Tensors' and so training's parameter order.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/chameleon-llm/chameleon/gpu"
)

// layerVar stands for the block index in a Layer row's names.
const layerVar = "{l}"

// Sizes are a config's sizes by the letters a table's shapes use (GPT-2:
// V vocabulary, P positions, C width).
type Sizes map[string]int

// Axis is one dimension of a tensor in a table: an optional decimal
// multiplier and a size letter ("3C": three times C), or a bare number.
type Axis string

// split returns the axis' multiplier and size name ("" for a bare number).
// It panics on an axis that is neither: a table is code, not input.
func (a Axis) split() (mul int, size string) {
	i := strings.IndexFunc(string(a), func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(a)
	}
	mul = 1
	if i > 0 {
		n, err := strconv.Atoi(string(a[:i]))
		if err != nil || n <= 0 {
			panic(fmt.Sprintf("model: table axis %q: bad multiplier", a))
		}
		mul = n
	}
	if i == 0 && len(a) == 0 {
		panic("model: table axis is empty")
	}
	return mul, string(a[i:])
}

// resolve is the axis' length under s.
func (a Axis) resolve(s Sizes) int {
	mul, size := a.split()
	if size == "" {
		return mul
	}
	n, ok := s[size]
	if !ok {
		panic(fmt.Sprintf("model: table axis %q: no size %q in the config's sizes", a, size))
	}
	return mul * n
}

// Role says what a tensor is for, which fixes how it is stored.
type Role uint8

const (
	// RoleVector is a gain or a bias: F32 on the device and in GGUF files.
	RoleVector Role = iota
	// RoleEmbedding is a table whose rows Embed gathers (GPT-2's wte is
	// also the tied output projection): in the weight dtype, F16 beside
	// quantized layer matrices, never quantized itself.
	RoleEmbedding
	// RoleMatrix is a block's MatMul weight, (out, in): in the weight
	// dtype, quantized in a quantized checkpoint (model/quantize.go).
	RoleMatrix
)

// Init is how RandomInit fills a tensor.
type Init uint8

const (
	InitZero     Init = iota // zeros (biases)
	InitOne                  // ones (norm gains)
	InitNormal               // normal(0, 0.02)
	InitResidual             // normal(0, 0.02/sqrt(2L)): projections into the residual stream (GPT-2)
)

// TensorDef is one row of a family's weight table: one tensor, or in a
// Table's Layer rows one per block.
type TensorDef[W any] struct {
	// Name is the project's name, which is the Hugging Face checkpoint's
	// without its base-model prefix; "{l}" stands for the block index.
	Name string
	// GGUF is llama.cpp's name for the tensor, with "{l}" likewise.
	GGUF  string
	Shape []Axis // outermost first; matrices (out, in)
	Role  Role
	// InOut: the Hugging Face checkpoint stores the matrix (in, out), as
	// GPT-2's Conv1D does; loading and saving transpose it.
	InOut bool
	Init  Init
	// Field is where the tensor lives in the weight struct; l is the block
	// (0 for a Pre or Post row).
	Field func(w *W, l int) *gpu.Tensor
}

// Table is a model family's weights: their rows in checkpoint order (see
// the file comment) and the weight struct they fill.
type Table[W any] struct {
	Family string              // for messages: "GPT-2"
	New    func(layers int) *W // an empty weight struct with room for layers blocks
	Pre    []TensorDef[W]      // before the blocks
	Layer  []TensorDef[W]      // each block's
	Post   []TensorDef[W]      // after the blocks
	// Ignore are Hugging Face names, "{l}" allowed, of entries a checkpoint
	// may hold that are not weights (non-persistent buffers); loading skips
	// them.
	Ignore []string
	// Head names the embedding that is also the tied output projection
	// (MatMul's w for the logits), if any: UploadOptions.SettleHead.
	Head string
}

// tensorEntry is one tensor of a family under a config: a table row with
// the block index and the sizes filled in.
type tensorEntry struct {
	Name, GGUF string
	Shape      []int
	Role       Role
	InOut      bool
	Init       Init
	layer      int // the block, 0 for a Pre or Post row
	row        int // index into Table.rows()
}

// rows are the table's rows, Pre then Layer then Post.
func (t *Table[W]) rows() []TensorDef[W] {
	return slices.Concat(t.Pre, t.Layer, t.Post)
}

// each calls fn for every tensor of a model of layers blocks, in checkpoint
// order, with its row, the row's index in rows() and its block (0 for a Pre
// or Post row).
func (t *Table[W]) each(layers int, fn func(d TensorDef[W], row, l int)) {
	for i, d := range t.Pre {
		fn(d, i, 0)
	}
	for l := 0; l < layers; l++ {
		for i, d := range t.Layer {
			fn(d, len(t.Pre)+i, l)
		}
	}
	for i, d := range t.Post {
		fn(d, len(t.Pre)+len(t.Layer)+i, 0)
	}
}

// entries expands the table for a config of layers blocks and sizes s.
func (t *Table[W]) entries(s Sizes, layers int) []tensorEntry {
	out := make([]tensorEntry, 0, len(t.Pre)+layers*len(t.Layer)+len(t.Post))
	t.each(layers, func(d TensorDef[W], row, l int) {
		e := tensorEntry{Name: expandName(d.Name, l), GGUF: expandName(d.GGUF, l), Role: d.Role,
			InOut: d.InOut, Init: d.Init, layer: l, row: row}
		for _, a := range d.Shape {
			e.Shape = append(e.Shape, a.resolve(s))
		}
		out = append(out, e)
	})
	return out
}

func expandName(pattern string, l int) string {
	return strings.Replace(pattern, layerVar, strconv.Itoa(l), 1)
}

// spec is the entries as host tensors without data: TensorSpec.
func (t *Table[W]) spec(s Sizes, layers int) []HostTensor {
	es := t.entries(s, layers)
	out := make([]HostTensor, len(es))
	for i, e := range es {
		out[i] = HostTensor{Name: e.Name, Shape: e.Shape}
	}
	return out
}

// find returns the row of a project tensor name and its block.
func (t *Table[W]) find(name string) (TensorDef[W], int, bool) {
	for _, d := range t.rows() {
		if l, ok := matchName(d.Name, name); ok {
			return d, l, true
		}
	}
	return TensorDef[W]{}, 0, false
}

// ignored reports whether a Hugging Face name (prefix stripped) is one of
// the table's Ignore entries.
func (t *Table[W]) ignored(name string) bool {
	for _, p := range t.Ignore {
		if _, ok := matchName(p, name); ok {
			return true
		}
	}
	return false
}

// layerPrefix is what every block tensor's name starts with before its
// index ("h." for GPT-2's project names, "blk." for GGUF's).
func (t *Table[W]) layerPrefix(gguf bool) string {
	name := t.Layer[0].Name
	if gguf {
		name = t.Layer[0].GGUF
	}
	pre, _, _ := strings.Cut(name, layerVar)
	return pre
}

// matchName reports whether name is pattern with "{l}" (if any) replaced by
// a block index written in plain decimal, and returns that index.
func matchName(pattern, name string) (int, bool) {
	pre, post, ok := strings.Cut(pattern, layerVar)
	if !ok {
		return 0, name == pattern
	}
	if len(name) <= len(pre)+len(post) || !strings.HasPrefix(name, pre) || !strings.HasSuffix(name, post) {
		return 0, false
	}
	return parseIndex(name[len(pre) : len(name)-len(post)])
}

// parseIndex parses a block index: decimal digits, no sign, no leading zero.
func parseIndex(num string) (int, bool) {
	if num == "" || (len(num) > 1 && num[0] == '0') || strings.IndexFunc(num, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	return n, err == nil
}

// tensors lists w's tensors in checkpoint order.
func (t *Table[W]) tensors(w *W, layers int) []gpu.Tensor {
	var out []gpu.Tensor
	t.each(layers, func(d TensorDef[W], _, l int) { out = append(out, *d.Field(w, l)) })
	return out
}

// free releases w's tensors on b and clears their fields; nil fields (of a
// partial upload) are skipped.
func (t *Table[W]) free(b gpu.Backend, w *W, layers int) {
	t.each(layers, func(d TensorDef[W], _, l int) {
		if f := d.Field(w, l); *f != nil {
			b.Free(*f)
			*f = nil
		}
	})
}

// upload puts host tensors on b in the fields of a new W: see UploadWith.
// On an error, what was already allocated is freed.
func (t *Table[W]) upload(b gpu.Backend, s Sizes, layers int, host []HostTensor, matDType gpu.DType, o UploadOptions) (*W, error) {
	byName := map[string]int{}
	for i, h := range host {
		byName[h.Name] = i
	}
	rows := t.rows()
	w := t.New(layers)
	released := 0
	if o.Release {
		debug.FreeOSMemory() // what loading left behind, before the device grows
	}
	for _, e := range t.entries(s, layers) {
		i, ok := byName[e.Name]
		if !ok {
			t.free(b, w, layers)
			return nil, fmt.Errorf("model: tensor %q missing", e.Name)
		}
		settle := o.Settle && e.Role == RoleMatrix || o.SettleHead && e.Name == t.Head
		x, err := uploadOne(b, e, host[i], matDType, settle)
		if err != nil {
			t.free(b, w, layers)
			return nil, err
		}
		*rows[e.row].Field(w, e.layer) = x
		if o.Release {
			released += 4*len(host[i].Data) + len(host[i].Blocks) + 2*len(host[i].Half)
			host[i].Data, host[i].Blocks, host[i].Half = nil, nil, nil
			if released >= releaseEvery {
				debug.FreeOSMemory()
				released = 0
			}
		}
	}
	if o.Release && released > 0 {
		debug.FreeOSMemory()
	}
	return w, nil
}

// releaseEvery is how many bytes of host data UploadOptions.Release drops
// between two returns of memory to the operating system (each a full
// garbage collection).
const releaseEvery = 32 << 20

// uploadOne allocates and writes the host tensor of entry e; with settle,
// into the one device copy MatMul reads (gpu.WriteSettled).
func uploadOne(b gpu.Backend, e tensorEntry, h HostTensor, matDType gpu.DType, settle bool) (gpu.Tensor, error) {
	dt, data, n := uploadDType(e.Role, matDType), any(h.Data), len(h.Data)
	switch {
	case h.Blocks != nil:
		dt, data, n = h.Quant, h.Blocks, gpu.Numel(e.Shape)
	case h.Half != nil && dt == gpu.F16:
		data, n = h.Half, len(h.Half)
	case h.Half != nil:
		// Another device dtype (f32, or quantized at load): widened one
		// tensor at a time.
		data, n = widen(h.Half), len(h.Half)
	}
	if n != gpu.Numel(e.Shape) {
		return nil, fmt.Errorf("model: tensor %q has shape %v (%d values), config wants %v", e.Name, h.Shape, n, e.Shape)
	}
	if !slices.Equal(h.Shape, e.Shape) {
		return nil, fmt.Errorf("model: tensor %q has shape %v, config wants %v", e.Name, h.Shape, e.Shape)
	}
	x, err := b.Alloc(dt, e.Shape...)
	if err != nil {
		return nil, fmt.Errorf("model: tensor %q: %w", e.Name, err)
	}
	write := b.Write
	if settle {
		write = func(x gpu.Tensor, data any) error { _, err := gpu.WriteSettled(b, x, data); return err }
	}
	if err := write(x, data); err != nil {
		b.Free(x)
		return nil, fmt.Errorf("model: tensor %q: %w", e.Name, err)
	}
	return x, nil
}

// randomInit fills every tensor by its row's Init, drawing in checkpoint
// order from one generator; deterministic for a seed.
func (t *Table[W]) randomInit(s Sizes, layers int, seed uint64) []HostTensor {
	rng := rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc908))
	residual := 0.02 / math.Sqrt(2*float64(layers))
	es := t.entries(s, layers)
	out := make([]HostTensor, len(es))
	for i, e := range es {
		data := make([]float32, gpu.Numel(e.Shape))
		std := 0.02
		switch e.Init {
		case InitOne:
			for j := range data {
				data[j] = 1
			}
		case InitResidual:
			std = residual
			fallthrough
		case InitNormal:
			for j := range data {
				data[j] = float32(rng.NormFloat64() * std)
			}
		}
		out[i] = HostTensor{Name: e.Name, Shape: e.Shape, Data: data}
	}
	return out
}

// factors are an entry's element count as CheckFits wants it: the product
// of the multipliers (if not 1), then each axis' size under keys.
func factors(shape []Axis, s Sizes, keys map[string]string) []Dim {
	mul := 1
	var out []Dim
	for _, a := range shape {
		m, size := a.split()
		mul *= m
		if size != "" {
			out = append(out, Dim{Key: keys[size], N: s[size]})
		}
	}
	if mul != 1 {
		out = append([]Dim{{N: mul}}, out...)
	}
	return out
}

// groups describes the expanded table for CheckFits without expanding it:
// each Pre and Post tensor a group of its own, the blocks one group
// repeated layers times. keys name the sizes as the checkpoint format
// states them, and keys["L"] the block count.
func (t *Table[W]) groups(s Sizes, layers int, keys map[string]string) []TensorGroup {
	var out []TensorGroup
	one := func(d TensorDef[W]) {
		out = append(out, TensorGroup{Name: d.Name, Tensors: [][]Dim{factors(d.Shape, s, keys)}})
	}
	for _, d := range t.Pre {
		one(d)
	}
	g := TensorGroup{Name: "each layer", Repeat: Dim{Key: keys["L"], N: layers}}
	for _, d := range t.Layer {
		g.Tensors = append(g.Tensors, factors(d.Shape, s, keys))
	}
	out = append(out, g)
	for _, d := range t.Post {
		one(d)
	}
	return out
}

// count returns the elements of the Pre and Post tensors and of one block's
// tensors whose role keep accepts.
func (t *Table[W]) count(s Sizes, keep func(Role) bool) (global, perLayer int) {
	n := func(d TensorDef[W]) int {
		if !keep(d.Role) {
			return 0
		}
		p := 1
		for _, a := range d.Shape {
			p *= a.resolve(s)
		}
		return p
	}
	for _, d := range slices.Concat(t.Pre, t.Post) {
		global += n(d)
	}
	for _, d := range t.Layer {
		perLayer += n(d)
	}
	return global, perLayer
}

// validate reports the first row of t that is malformed under s (sizes for
// every letter its shapes use): a Layer row whose names lack "{l}" or any
// other row whose names have it, a repeated name, an axis that does not
// resolve to a positive length, InOut on a tensor that is not a matrix, a
// matrix or embedding that is not 2-D, or a missing Field. Each family's
// tests call it on their table.
func (t *Table[W]) validate(s Sizes) (err error) {
	defer func() {
		if r := recover(); r != nil { // Axis.split and Axis.resolve panic on a bad axis
			err = fmt.Errorf("%s table: %v", t.Family, r)
		}
	}()
	if t.New == nil || len(t.Layer) == 0 {
		return fmt.Errorf("%s table: needs New and at least one Layer row", t.Family)
	}
	seen := map[string]bool{}
	for i, d := range t.rows() {
		inLayer := i >= len(t.Pre) && i < len(t.Pre)+len(t.Layer)
		for col, n := range []string{d.Name, d.GGUF} {
			key := strconv.Itoa(col) + n // each column's names are unique
			if n == "" || strings.Contains(n, layerVar) != inLayer || seen[key] {
				return fmt.Errorf("%s table: row %d: name %q is empty, repeated, or has %s where it should not (or lacks it)", t.Family, i, n, layerVar)
			}
			seen[key] = true
		}
		for _, a := range d.Shape {
			if a.resolve(s) <= 0 {
				return fmt.Errorf("%s table: %s: axis %q is not positive", t.Family, d.Name, a)
			}
		}
		switch {
		case len(d.Shape) == 0:
			return fmt.Errorf("%s table: %s has no shape", t.Family, d.Name)
		case d.Role != RoleVector && len(d.Shape) != 2:
			return fmt.Errorf("%s table: %s is a matrix or embedding of %d dims", t.Family, d.Name, len(d.Shape))
		case d.InOut && d.Role != RoleMatrix:
			return fmt.Errorf("%s table: %s is stored (in, out) but is not a matrix", t.Family, d.Name)
		case d.Field == nil:
			return fmt.Errorf("%s table: %s has no Field", t.Family, d.Name)
		}
	}
	return nil
}
