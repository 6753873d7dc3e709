package gpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// WebGPU is the Backend that runs every op as a WGSL kernel on a Device.
type WebGPU struct {
	*Device
	// MatMulVariant names the matmul kernel family in use; chosen per
	// adapter by NewWebGPU (textures on native CPU adapters, register
	// blocks in the browser's, workgroup tiles on GPUs) and overridable
	// for benchmarks and tests (env CHAMELEON_MATMUL).
	MatMulVariant string
	// AttentionDecodeVariant names the decode attention kernel (Tq = 1):
	// AttentionDecodeLanes on CPU adapters, AttentionDecodeWG on GPUs
	// (env CHAMELEON_ATTENTION_DECODE).
	AttentionDecodeVariant string
	// RowWG is the workgroup size of the kernels that reduce each row in
	// one workgroup (layer norms, log-softmax, cross-entropy and its
	// backward): 256 on GPUs, 8 on CPU adapters, where 8 invocations are
	// one SIMD vector and a larger workgroup's barriers cost more than a
	// row's arithmetic. Either value may be set on any adapter.
	RowWG int
	// BatchInvariant keeps to kernels whose result for one row (one
	// sequence) does not depend on the other rows of the call, bit for bit:
	// MatMul takes the family of a many-row call at every M (the mat-vec
	// kernels sum in another order than the tile kernel; the texture
	// kernels agree with each other by construction) and decode attention
	// the lanes kernel, which shares attention.wgsl's per-query loop. The
	// server sets it: a continuous batch mixes one sequence's decode row with
	// other sequences' prompt chunks, and a request's output must not
	// depend on its neighbours. It costs speed on GPUs at small batches.
	BatchInvariant bool
	// Unfused runs MatMulGELU and MatMulKVStore as their two ops and has
	// no op write a texture copy of its output for the next matmul
	// (xtex.go): the dispatches of a decode step before the fusions, for
	// A/B benchmarks in one process (env CHAMELEON_UNFUSED=1).
	Unfused bool
	// FuseEpilogues turns on the fused kernels that run one op where a
	// plain forward runs several: on the texture matmuls (CPU adapters)
	// MatMulGELU and MatMulKVStore as one kernel each (GELU, or the
	// KV-cache store, in the matmul's epilogue); on the GPU decode family
	// (the cooperative mat-vec) the fused block ops (FusesBlock:
	// LayerNormAttention, LayerNormMatMul, MatMulAdd), which take a GPT-2
	// decode step to 4 dispatches a block. Off, each runs as its parts.
	// By default on for GPU adapters (Info.Type not "cpu"), where a
	// decode step is bound by its dispatches; off on CPU adapters: on
	// lavapipe the texture epilogues made `chameleon run` 6.5% slower
	// (wall clock, median of 5 interleaved pairs, 1.01-1.19), and the
	// block fusions' kernels are not the ones lavapipe runs. Env
	// CHAMELEON_FUSE_EPILOGUES=1 or =0 overrides; the GPU test helper
	// turns them on, so the fused kernels stay tested.
	FuseEpilogues bool
}

// NewWebGPU wraps an opened device as a Backend.
func NewWebGPU(d *Device) *WebGPU {
	w := &WebGPU{Device: d}
	w.MatMulVariant = defaultMatMulVariant(d)
	w.AttentionDecodeVariant = AttentionDecodeWG
	w.RowWG = 256
	if d.Info.Type == "cpu" {
		w.AttentionDecodeVariant = AttentionDecodeLanes
		w.RowWG = 8
	}
	// Overrides, to compare kernels on one adapter (e.g. with chameleon bench).
	if v := os.Getenv("CHAMELEON_MATMUL"); v != "" {
		MatMulFamily(v, 1) // panics, naming the valid values, on an unknown one
		w.MatMulVariant = v
	}
	w.Unfused = os.Getenv("CHAMELEON_UNFUSED") == "1"
	w.FuseEpilogues = d.Info.Type != "cpu"
	if v := os.Getenv("CHAMELEON_FUSE_EPILOGUES"); v != "" {
		w.FuseEpilogues = v == "1"
	}
	if v := os.Getenv("CHAMELEON_ATTENTION_DECODE"); v != "" {
		if v != AttentionDecodeWG && v != AttentionDecodeLanes {
			panic(fmt.Sprintf("gpu: CHAMELEON_ATTENTION_DECODE=%q: want %q or %q", v, AttentionDecodeWG, AttentionDecodeLanes))
		}
		w.AttentionDecodeVariant = v
	}
	return w
}

// Name describes the backend and adapter.
func (w *WebGPU) Name() string { return "webgpu: " + w.Device.String() }

// tensor is a WebGPU tensor: a pooled buffer plus shape. F16 tensors are
// stored with each row (last dim) padded to an even length and packed two
// halves per u32, so kernels read them with unpack2x16float on any adapter.
type tensor struct {
	shape []int
	dt    DType
	buf   *Buffer // nil once settled
	bytes uint64  // bytes in use (a multiple of 4)
	freed bool
	tex   *shadow // a settled weight's texture, its only copy (resident.go)
}

func (t *tensor) Shape() []int { return t.shape }
func (t *tensor) DType() DType { return t.dt }

// rowsCols splits a shape into (product of leading dims, last dim).
func rowsCols(shape []int) (int, int) {
	if len(shape) == 0 {
		return 1, 1
	}
	return Numel(shape[:len(shape)-1]), shape[len(shape)-1]
}

// storageBytes is the GPU size of a tensor.
func storageBytes(dt DType, shape []int) uint64 {
	if f, ok := dt.Quant(); ok {
		r, c := rowsCols(shape)
		return uint64(r) * uint64(quantRowWords(f, c)) * 4
	}
	if dt == F16 {
		r, c := rowsCols(shape)
		return uint64(r) * uint64((c+1)/2) * 4
	}
	return uint64(Numel(shape)) * 4
}

// Alloc returns an uninitialised tensor.
func (w *WebGPU) Alloc(dt DType, shape ...int) (Tensor, error) {
	for _, s := range shape {
		if s < 0 {
			panic(fmt.Sprintf("gpu: Alloc: negative dimension in %v", shape))
		}
	}
	if err := CheckQuantShape(dt, shape); err != nil {
		return nil, err
	}
	n := storageBytes(dt, shape)
	alloc := max(n, 4)
	b, err := w.pool.get(alloc, fmt.Sprintf("%v%v", dt, shape))
	if err != nil {
		return nil, err
	}
	return &tensor{shape: slices.Clone(shape), dt: dt, buf: b, bytes: n}, nil
}

func (w *WebGPU) t(x Tensor) *tensor {
	t, ok := x.(*tensor)
	if !ok {
		panic(fmt.Sprintf("gpu: tensor %T is not a WebGPU tensor", x))
	}
	if t.freed {
		panic("gpu: use of a freed tensor")
	}
	return t
}

// bind is the binding of a whole tensor.
func (w *WebGPU) bind(x Tensor) binding {
	t := w.t(x)
	if t.buf == nil {
		panic(heldAsTexture("binding", t))
	}
	return binding{buf: t.buf, offset: 0, size: max(t.bytes, 4)}
}

// Write uploads host data: []float32 into F32 or F16 tensors, []uint16
// (IEEE half bits) into F16, []int32 into I32, blocks or []float32 into
// quantized tensors.
func (w *WebGPU) Write(x Tensor, data any) error {
	t := w.t(x)
	if t.buf == nil {
		return fmt.Errorf("%s", heldAsTexture("Write", t))
	}
	rows, rowBytes, fill, err := deviceRows(t, data)
	if err != nil {
		return err
	}
	return w.writeRows(t.buf, 0, rows, rowBytes, fill)
}

// deviceRows checks data against t and returns t's device layout as rows
// of rowBytes bytes (a multiple of 4) and fill, which writes rows r0.. of
// data in that layout into dst (a whole number of rows), converting as it
// goes so that no device-sized copy of the data is made (except for
// quantized data, packed whole).
func deviceRows(t *tensor, data any) (rows, rowBytes int, fill func(dst []byte, r0 int), err error) {
	n := Numel(t.shape)
	r, c := rowsCols(t.shape)
	if h, ok := data.([]uint16); ok && t.dt == F16 {
		if len(h) != n {
			return 0, 0, nil, fmt.Errorf("gpu: Write: f16 tensor %v needs %d halves, got %d", t.shape, n, len(h))
		}
		return r, 4 * ((c + 1) / 2), func(dst []byte, r0 int) { halfRows(dst, r0, c, func(i int) uint16 { return h[i] }) }, nil
	}
	switch t.dt {
	case F32, F16:
		f, ok := data.([]float32)
		if !ok || len(f) != n {
			return 0, 0, nil, fmt.Errorf("gpu: Write: %v tensor %v needs []float32 of length %d, got %T", t.dt, t.shape, n, data)
		}
		if t.dt == F16 {
			return r, 4 * ((c + 1) / 2), func(dst []byte, r0 int) {
				halfRows(dst, r0, c, func(i int) uint16 { return F32ToF16(f[i]) })
			}, nil
		}
		return r, 4 * c, func(dst []byte, r0 int) {
			for i, v := range f[r0*c : r0*c+len(dst)/4] {
				binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
			}
		}, nil
	case Q8_0, Q4_0, Q4_K:
		blocks, err := QuantBlocks(t.dt, t.shape, data)
		if err != nil {
			return 0, 0, nil, err
		}
		f, _ := t.dt.Quant()
		raw := packQuantRows(f, blocks, r, c)
		rb := 4 * quantRowWords(f, c)
		return r, rb, func(dst []byte, r0 int) { copy(dst, raw[r0*rb:]) }, nil
	case I32:
		v, ok := data.([]int32)
		if !ok || len(v) != n {
			return 0, 0, nil, fmt.Errorf("gpu: Write: i32 tensor %v needs []int32 of length %d, got %T", t.shape, n, data)
		}
		return n, 4, func(dst []byte, r0 int) {
			for i, x := range v[r0 : r0+len(dst)/4] {
				binary.LittleEndian.PutUint32(dst[4*i:], uint32(x))
			}
		}, nil
	}
	return 0, 0, nil, fmt.Errorf("gpu: Write: unknown dtype %v", t.dt)
}

// ReadF32 returns an F32 or F16 tensor's contents, or a quantized
// tensor's dequantized weights.
func (w *WebGPU) ReadF32(x Tensor) ([]float32, error) {
	t := w.t(x)
	if t.dt == I32 {
		return nil, fmt.Errorf("gpu: ReadF32 of an i32 tensor")
	}
	if t.buf == nil {
		return nil, fmt.Errorf("%s", heldAsTexture("ReadF32", t))
	}
	raw, err := w.readBytes(t.buf, 0, t.bytes)
	if err != nil {
		return nil, err
	}
	n := Numel(t.shape)
	out := make([]float32, n)
	if f, ok := t.dt.Quant(); ok {
		r, c := rowsCols(t.shape)
		quant.Dequantize(f, out, unpackQuantRows(f, raw, r, c))
		return out, nil
	}
	if t.dt == F32 {
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return out, nil
	}
	r, c := rowsCols(t.shape)
	cp := (c + 1) / 2 * 2
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out[i*c+j] = F16ToF32(binary.LittleEndian.Uint16(raw[2*(i*cp+j):]))
		}
	}
	return out, nil
}

// ReadI32 returns an I32 tensor's contents.
func (w *WebGPU) ReadI32(x Tensor) ([]int32, error) {
	t := w.t(x)
	if t.dt != I32 {
		return nil, fmt.Errorf("gpu: ReadI32 of a %v tensor", t.dt)
	}
	raw, err := w.readBytes(t.buf, 0, t.bytes)
	if err != nil {
		return nil, err
	}
	out := make([]int32, Numel(t.shape))
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out, nil
}

// Free returns the tensor's buffer to the pool once recorded work is done
// with it.
func (w *WebGPU) Free(x Tensor) {
	t := w.t(x)
	t.freed = true
	if t.buf == nil {
		delete(w.settled, t.tex.tex)
		w.retire(t.tex.tex)
		t.tex = nil
		return
	}
	w.dropShadow(t.buf)
	if w.rec.enc != nil {
		// A recorded dispatch may still use it: the pool may hand it
		// out again only after that work is submitted.
		w.rec.pendingFree = append(w.rec.pendingFree, t.buf)
		return
	}
	w.pool.put(t.buf)
}

// grid1 splits n workgroups into an (x, y) grid within the per-dimension
// limit; kernels recover the linear id as wid.y * nwg.x + wid.x.
func (w *WebGPU) grid1(n int) (uint32, uint32) {
	lim := int(w.Limits.MaxWorkgroupsPerDimension)
	if n <= lim {
		return uint32(n), 1
	}
	y := (n + lim - 1) / lim
	return uint32((n + y - 1) / y), uint32(y)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

var _ Backend = (*WebGPU)(nil)
