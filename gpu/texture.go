package gpu

import (
	"fmt"
	"strings"

	"github.com/cogentcore/webgpu/wgpu"

	"github.com/chameleon-llm/chameleon/wgsl"
)

// Textures for the texture matmuls (MatMulTex). On lavapipe, Mesa's CPU
// Vulkan driver, every storage-buffer load is compiled as a bounds-checked
// scalar load per SIMD lane, while an image load is a vector gather of 16
// bytes per lane: a matmul reading x and w from rgba32uint textures runs
// 8-20x faster than the best storage-buffer kernel there (BENCHMARKS.md).
// Weights are copied into a texture once and kept (a "shadow"), refreshed
// when their buffer is written again; x is copied into a scratch texture
// on every call. The copies are kernels (tex_pack.wgsl), so any K works,
// except x of more than texCopyMinRows rows with K a multiple of 64, which
// the queue copies (copyIn).

// texture is one rgba32uint 2D texture and its view.
type texture struct {
	tex    *wgpu.Texture
	view   *wgpu.TextureView
	w, h   uint32
	id     uint64
	groups []string // bind-group cache keys that reference it
	d      *Device
	held   xHeld // an activation's copy: what it holds (xtex.go)
}

// texBinding binds a texture in group 2 as a storage texture: read-only
// (texture_storage_2d<rgba32uint, read>) or write-only. Kernels read
// storage textures rather than sampled ones because Mesa's lavapipe
// compiles a sampled texture's textureLoad with per-lane mip-level
// handling (sizes, strides and offsets looked up for each of the 8 lanes)
// and an image load without it: the texture matmuls run 1.1-2x faster.
type texBinding struct {
	t     *texture
	write bool
}

// texKinds names the group 2 layout of ts: "r" per read-only texture, "w"
// per write-only one.
func texKinds(ts []texBinding) string {
	var b strings.Builder
	for _, t := range ts {
		if t.write {
			b.WriteByte('w')
		} else {
			b.WriteByte('r')
		}
	}
	return b.String()
}

func (d *Device) texLayout(name, kinds string) (*wgpu.BindGroupLayout, error) {
	entries := make([]wgpu.BindGroupLayoutEntry, len(kinds))
	for i, k := range kinds {
		e := wgpu.BindGroupLayoutEntry{Binding: uint32(i), Visibility: wgpu.ShaderStageCompute}
		if k == 'w' {
			e.StorageTexture = wgpu.StorageTextureBindingLayout{Access: wgpu.StorageTextureAccessWriteOnly,
				Format: wgpu.TextureFormatRGBA32Uint, ViewDimension: wgpu.TextureViewDimension2D}
		} else {
			e.StorageTexture = wgpu.StorageTextureBindingLayout{Access: wgpu.StorageTextureAccessReadOnly,
				Format: wgpu.TextureFormatRGBA32Uint, ViewDimension: wgpu.TextureViewDimension2D}
		}
		entries[i] = e
	}
	return d.dev.CreateBindGroupLayout(&wgpu.BindGroupLayoutDescriptor{Label: name + " textures", Entries: entries})
}

// texGroup returns the (cached) group 2 bind group of ts for p.
func (d *Device) texGroup(p *pipeline, ts []texBinding) (*wgpu.BindGroup, error) {
	var sb strings.Builder
	sb.WriteString("tex|" + p.name)
	for _, t := range ts {
		fmt.Fprintf(&sb, "|%d", t.t.id)
	}
	key := sb.String()
	if g, ok := d.groups[key]; ok {
		return g, nil
	}
	entries := make([]wgpu.BindGroupEntry, len(ts))
	for i, t := range ts {
		entries[i] = wgpu.BindGroupEntry{Binding: uint32(i), TextureView: t.t.view}
	}
	g, err := d.dev.CreateBindGroup(&wgpu.BindGroupDescriptor{Label: p.name + " textures", Layout: p.tbgl, Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("texture bind group: %w", err)
	}
	d.groups[key] = g
	for _, t := range ts {
		t.t.groups = append(t.t.groups, key)
	}
	return g, nil
}

// newTexture creates a w x h rgba32uint texture that kernels can write
// (storage) and read (textureLoad).
func (d *Device) newTexture(label string, w, h uint32) (*texture, error) {
	if err := d.Lost(); err != nil {
		return nil, err
	}
	tx, err := d.dev.CreateTexture(&wgpu.TextureDescriptor{Label: label,
		Usage:     wgpu.TextureUsageStorageBinding | wgpu.TextureUsageCopyDst,
		Dimension: wgpu.TextureDimension2D, Size: wgpu.Extent3D{Width: w, Height: h, DepthOrArrayLayers: 1},
		Format: wgpu.TextureFormatRGBA32Uint, MipLevelCount: 1, SampleCount: 1})
	if err != nil {
		return nil, fmt.Errorf("gpu: create texture %s (%dx%d): %w", label, w, h, err)
	}
	v, err := tx.CreateView(nil)
	if err != nil {
		tx.Release()
		return nil, fmt.Errorf("gpu: texture view %s: %w", label, err)
	}
	d.nextTexID++
	d.texBytes += 16 * uint64(w) * uint64(h)
	return &texture{tex: tx, view: v, w: w, h: h, id: d.nextTexID, d: d}, nil
}

// release drops the texture and every cached bind group that uses it.
func (t *texture) release() {
	for _, k := range t.groups {
		if g, ok := t.d.groups[k]; ok {
			g.Release()
			delete(t.d.groups, k)
		}
	}
	t.groups = nil
	t.d.texBytes -= 16 * uint64(t.w) * uint64(t.h)
	t.view.Release()
	t.tex.Release()
}

// retire releases t once the recorded work that may use it is submitted.
func (d *Device) retire(t *texture) {
	if d.rec.enc != nil {
		d.rec.pendingTex = append(d.rec.pendingTex, t)
		return
	}
	t.release()
}

func (d *Device) releaseTextures() {
	for _, s := range d.shadows {
		s.tex.release()
	}
	for _, t := range d.scratch {
		t.release()
	}
	for _, t := range d.xtex {
		t.release()
	}
	for _, t := range d.unpacked {
		t.release()
	}
	for _, t := range d.rec.pendingTex {
		t.release()
	}
	for t := range d.settled {
		t.release()
	}
	d.shadows, d.scratch, d.xtex, d.unpacked, d.rec.pendingTex, d.settled = nil, nil, nil, nil, nil, nil
}

// texFit lays rows of kt texels out in a texture: rowsPer matrix rows per
// texture row (at most want), the texture's width and height; ok is false
// when a row or the whole matrix does not fit the device's 2D size limit.
func texFit(rows, kt, want int, maxDim uint32) (rowsPer int, w, h uint32, ok bool) {
	lim := int(maxDim)
	if kt < 1 || kt > lim || rows < 1 {
		return 0, 0, 0, false
	}
	rowsPer = max(1, min(want, lim/kt))
	hh := ceilDiv(rows, rowsPer)
	if hh > lim {
		return 0, 0, 0, false
	}
	return rowsPer, uint32(rowsPer * kt), uint32(hh), true
}

// texFitBlocked lays rows of kt texels out in the kernels' blocked weight
// layout (wgsl.TexBlock rows per block, see the matmul_tex kernels): the
// texture's width (a multiple of the block) and height; ok is false when
// the matrix does not fit the device's 2D size limit.
func texFitBlocked(rows, kt int, maxDim uint32) (w, h uint32, ok bool) {
	lim := int(maxDim) / wgsl.TexBlock * wgsl.TexBlock
	if kt < 1 || rows < 1 || lim < wgsl.TexBlock {
		return 0, 0, false
	}
	total := ceilDiv(rows, wgsl.TexBlock) * wgsl.TexBlock * kt
	ww := min(lim, ceilDiv(total, wgsl.TexBlock)*wgsl.TexBlock)
	hh := ceilDiv(total, ww)
	if hh > int(maxDim) {
		return 0, 0, false
	}
	return uint32(ww), uint32(hh), true
}

// shadow is the texture copy of a weight matrix (rows, k) of dtype dt in
// the blocked layout, valid while its buffer's gen is unchanged.
type shadow struct {
	tex     *texture
	gen     uint64
	rows, k int
	dt      DType
	kt      int  // texels per row
	kv      bool // a KV cache's copy (row-major, kvTextures), not a weight's
}

// texTexels is the number of texels of one row of k values of dtype dt
// (quantized: of its packed words, gpu/quant_layout.go).
func texTexels(dt DType, k int) int {
	if f, ok := dt.Quant(); ok {
		return ceilDiv(quantRowWords(f, k), 4)
	}
	if dt == F16 {
		return ceilDiv(k, 8)
	}
	return ceilDiv(k, 4)
}

// weightTexture returns the texture copy of weight matrix wt, packing it
// first if it is missing or stale. ok is false when it cannot fit a
// texture (the caller then uses buffer kernels).
func (w *WebGPU) weightTexture(wt Tensor) (*shadow, bool) {
	t := w.t(wt)
	if t.tex != nil {
		return t.tex, true // settled: the texture is its only copy
	}
	rows, k := rowsCols(t.shape)
	kt := texTexels(t.dt, k)
	s := w.shadows[t.buf]
	if s != nil && !s.kv && s.rows == rows && s.k == k && s.dt == t.dt {
		if s.gen == t.buf.gen {
			return s, true
		}
		// Written since: copy it again into the same texture (the queue
		// runs the copy after every earlier use of the old contents).
	} else {
		if s != nil {
			w.retire(s.tex)
			delete(w.shadows, t.buf)
		}
		tw, th, ok := texFitBlocked(rows, kt, w.Limits.MaxTextureDimension2D)
		if !ok {
			return nil, false
		}
		tex, err := w.newTexture("weights", tw, th)
		if err != nil {
			w.rec.fail(err)
			return nil, false
		}
		s = &shadow{tex: tex, rows: rows, k: k, dt: t.dt, kt: kt}
		w.shadows[t.buf] = s
	}
	for _, ch := range w.rowChunks("MatMul", wt) {
		w.pack(t.dt, ch.b, s.tex, ch.n, k, kt, int(s.tex.w), ch.start, true)
	}
	s.gen = t.buf.gen
	return s, true
}

// pack records the copy of rows rows (bound as src, k values of dtype dt
// each) into texture dst from row rowBase, kt texels per row: row-major
// with rowsPer rows per texture row, or blocked (the weights' layout, see
// texFitBlocked) with rowsPer the texture's width.
func (w *WebGPU) pack(dt DType, src binding, dst *texture, rows, k, kt, rowsPer, rowBase int, blocked bool) {
	perWord := 1
	if dt == F16 {
		perWord = 2
	}
	if f, ok := dt.Quant(); ok {
		k = quantRowWords(f, k) // the packed words, copied as they are
	}
	bl := 0
	if blocked {
		bl = 1
	}
	gx, gy := w.grid1(ceilDiv(rows*kt, 64))
	w.nextBytes = float64(src.size) + 16*float64(rows*kt)
	w.dispatchTex("tex_pack", 1, 0, []binding{src}, []texBinding{{dst, true}},
		Meta{rows, k, kt, rowsPer, rowBase, perWord, bl}, gx, gy, 1)
}

// copyIn copies rows of k floats (k a multiple of 64) from the binding src
// into the first rows of t, one row per texture row.
func (w *WebGPU) copyIn(src binding, t *texture, k, rows int) {
	enc, err := w.rec.encoder()
	if err != nil {
		w.rec.fail(err)
		return
	}
	err = enc.CopyBufferToTexture(&wgpu.ImageCopyBuffer{Buffer: src.buf.buf, Layout: wgpu.TextureDataLayout{Offset: src.offset,
		BytesPerRow: uint32(4 * k), RowsPerImage: uint32(rows)}},
		&wgpu.ImageCopyTexture{Texture: t.tex}, &wgpu.Extent3D{Width: uint32(k / 4), Height: uint32(rows), DepthOrArrayLayers: 1})
	if err != nil {
		w.rec.fail(fmt.Errorf("gpu: MatMul: copy of x into its texture: %w", err))
	}
}

// scratchTexture returns a texture of at least h rows of width tw for
// per-call copies of x (one per width, grown as needed).
func (w *WebGPU) scratchTexture(tw, h uint32) (*texture, error) {
	if t := w.scratch[tw]; t != nil && t.h >= h {
		return t, nil
	} else if t != nil {
		w.retire(t)
		delete(w.scratch, tw)
	}
	t, err := w.newTexture("x", tw, h)
	if err != nil {
		return nil, err
	}
	w.scratch[tw] = t
	return t, nil
}

// dropShadow forgets the texture copy of a freed buffer.
func (w *WebGPU) dropShadow(b *Buffer) {
	if s := w.shadows[b]; s != nil {
		w.retire(s.tex)
		delete(w.shadows, b)
	}
}

// texMatKernel is a texture matmul kernel and its output block per
// workgroup (bm rows, bn columns), matching wgsl.TexKernels.
type texMatKernel struct {
	name   string
	bm, bn int
}

// texKernelFor is the first of ks (ordered by rows a block) whose block
// holds m rows, else the last.
func texKernelFor(ks []texMatKernel, m int) texMatKernel {
	for _, kc := range ks {
		if m <= kc.bm {
			return kc
		}
	}
	return ks[len(ks)-1]
}

// texMatKernels by weight dtype, smallest block first (the order of
// wgsl.TexKernels): the first whose bm covers M is used, the last one for
// anything larger. Blocks come from the generator's table, so the grid
// always matches the kernel.
var texMatKernels, texGELUKernels, texKVKernels = texKernelTables()

// texKernelTables sorts wgsl.TexKernels by weight dtype, in their order:
// the plain kernels, the GELU twins (MatMulGELU) and the KV-store twins
// (MatMulKVStore).
func texKernelTables() (plain, gelu, kv map[DType][]texMatKernel) {
	plain, gelu, kv = map[DType][]texMatKernel{}, map[DType][]texMatKernel{}, map[DType][]texMatKernel{}
	for _, k := range wgsl.TexKernels {
		dt, out := F32, plain
		if k.F16 {
			dt = F16
		}
		switch k.Epi {
		case "gelu":
			out = gelu
		case "kv":
			out = kv
		case "lr":
			continue // MatMulLowRank's (matmul_lowrank.go)
		}
		out[dt] = append(out[dt], texMatKernel{k.Name, k.RM, k.RN * k.WG})
	}
	return plain, gelu, kv
}

// texCopyMinRows: x of more rows than this (and K a multiple of 64) reaches
// its texture through a queue copy instead of the pack kernel. At 256 x 768
// the copy saves ~2.5 ms of ~54 (lavapipe, dev-2c); at 8 rows it costs
// ~0.25 ms more than the pack, the compute pass it interrupts included.
const texCopyMinRows = 8

// texSubmitFlops bounds one submission of texture matmul work on CPU
// adapters (see cpuSubmitFlops; these kernels run ~10x faster).
const texSubmitFlops = 1 << 31

// matMulTex is MatMul through textures. It returns false, having recorded
// nothing, when w does not fit a texture.
func (w *WebGPU) matMulTex(dst, x, wt, bias Tensor, m, k, n int) bool {
	return w.matMulTexEp(dst, x, wt, bias, m, k, n, nil)
}

// matMulTexEp is matMulTex with the epilogue ep (nil: bias only), e.g. a
// site's low-rank update (MatMulLowRank).
func (w *WebGPU) matMulTexEp(dst, x, wt, bias Tensor, m, k, n int, ep *texEpilogue) bool {
	if !w.HasTexRead {
		return false
	}
	// x: f32 texels of 4; with f16 weights two x texels face one w texel.
	xkt := texTexels(wt.DType(), k)
	if wt.DType() == F16 {
		xkt *= 2
	}
	xRowsPer, tw, _, ok := texFit(1, xkt, int(w.Limits.MaxTextureDimension2D), w.Limits.MaxTextureDimension2D)
	if !ok {
		return false
	}
	s, ok := w.weightTexture(wt)
	if !ok {
		return false
	}
	w.matMulTexWith(dst, x, s, bias, w.spareBinding(), m, k, n, xkt, xRowsPer, tw, ep)
	return true
}

// matMulTexWith records MatMul through textures with the weights in s
// (F32 or F16, blocked), x packed xkt texels a row, xRowsPer rows to a
// texture row of width tw; spare is a read-only buffer bound in place of a
// missing bias. With ep, it runs ep's kernels (the caller has checked
// that x is one chunk of rows).
func (w *WebGPU) matMulTexWith(dst, x Tensor, s *shadow, bias Tensor, spare binding, m, k, n, xkt, xRowsPer int, tw uint32, ep *texEpilogue) {
	bb, hasBias := spare, 0
	if bias != nil {
		bb, hasBias = w.bind(bias), 1
	}
	chunks := w.matRowChunks(x, dst, m, k, n)
	for _, c := range chunks {
		rm, db := c.rows, c.dst
		var xtex *texture
		var err error
		xrp := xRowsPer
		held := false
		if len(chunks) == 1 {
			// x written into its texture by the op that made it (xtex.go).
			xtex, held = w.xTexHeld(x, m, k)
		}
		if held {
			// nothing to copy
		} else if k%64 == 0 && rm > texCopyMinRows && rm <= int(w.Limits.MaxTextureDimension2D) {
			// One x row per texture row, which the queue copies from the
			// buffer (a memcpy on lavapipe, where the pack kernel reads the
			// buffer lane by lane): rows of k floats are then whole texels
			// (xkt = k/4) at a 256-byte-aligned pitch.
			if xtex, err = w.scratchTexture(uint32(xkt), uint32(rm)); err != nil {
				w.rec.fail(err)
				return
			}
			w.copyIn(c.x, xtex, k, rm)
			xrp = 1
		} else {
			if xtex, err = w.scratchTexture(tw, uint32(ceilDiv(chunks[0].rows, xRowsPer))); err != nil {
				w.rec.fail(err)
				return
			}
			w.pack(F32, c.x, xtex, rm, k, xkt, xRowsPer, 0, false)
		}
		ks := texMatKernels[s.dt]
		if ep != nil {
			ks = ep.kernels[s.dt]
		}
		kern := texKernelFor(ks, rm)
		tilesN, tilesM := ceilDiv(n, kern.bn), ceilDiv(rm, kern.bm)
		total := tilesN * tilesM
		step := total
		if w.Info.Type == "cpu" {
			perTile := 2 * float64(kern.bm) * float64(kern.bn) * float64(max(k, 1))
			step = max(1, min(total, int(texSubmitFlops/perTile)))
		}
		for t0 := 0; t0 < total; t0 += step {
			cnt := min(step, total-t0)
			gx, gy := w.grid1(cnt)
			w.nextFlops = 2 * float64(rm) * float64(k) * float64(n) * float64(cnt) / float64(total)
			w.nextBytes = (float64(s.rows*s.kt)*16 + float64(rm*xkt)*16) * float64(cnt) / float64(total)
			bs, ts := []binding{bb, db}, []texBinding{{xtex, false}, {s.tex, false}}
			meta := Meta{rm, n, s.kt, xrp, int(s.tex.w), hasBias, tilesN, t0}
			nIn, nOut := 1, 1
			if ep != nil {
				bs = append(append(append([]binding{bb}, ep.in...), db), ep.out...)
				ts = append(ts, ep.tex...)
				meta = append(meta, ep.meta...)
				nIn, nOut = 1+len(ep.in), 1+len(ep.out)
			}
			w.dispatchTex(kern.name, nIn, nOut, bs, ts, meta, gx, gy, 1)
			if cnt < total {
				if err := w.flush(); err != nil {
					w.rec.fail(err)
				}
			}
		}
	}
}
