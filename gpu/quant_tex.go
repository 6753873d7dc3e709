package gpu

import (
	"strings"

	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/wgsl"
)

// matMulQuantTex is MatMul with quantized w through textures, for CPU
// adapters, where texture loads are far cheaper than storage loads
// (texture.go): w's packed rows are copied once into a texture
// (weightTexture). Decode runs texture mat-vecs that dequantize in
// registers (wgsl.QTexKernels): one row of x runs matmul_qtex1_*.wgsl, 2
// to quantTexRowsMax rows matmul_qtex8_*.wgsl, which dequantizes each
// block of w once per 8 rows; x is read from the texture its producer
// wrote (xtex.go) where there is one, else packed into one. More rows (prefill) dequantize w into a per-call f32
// texture (quant_unpack_*.wgsl, exact weights) and run the f32 texture
// matmuls, whose register blocks reuse each weight for up to 16 rows: the
// unpacking costs one pass over w, the storage-buffer register kernels
// several times more on lavapipe.
// It returns false, having recorded nothing, when it does not apply: no
// texture reads, a matrix that does not fit a texture, or BatchInvariant
// (the texture kernels sum in another order than the register kernels the
// server then runs, so a row alone would not equal the same row in a batch).
// quantTexRowsMax is the most rows of x that run the texture mat-vecs; at
// 16 rows (two row blocks) they still run ~2x faster than unpacking
// (BenchmarkMatMulQuant on lavapipe, BENCHMARKS.md).
const quantTexRowsMax = 16

func (w *WebGPU) matMulQuantTex(dst, x, wt, bias Tensor, m, k, n int) bool {
	return w.matMulQuantTexEp(dst, x, wt, bias, m, k, n, nil)
}

// matMulQuantTexEp is matMulQuantTex with the epilogue ep (nil: bias
// only): ep.kernels holds the mat-vecs' twins by quantized dtype and, for
// the unpacked path, the f32 texture matmuls' (MatMulLowRank's). With ep
// the caller has checked that x is one chunk of rows.
func (w *WebGPU) matMulQuantTexEp(dst, x, wt, bias Tensor, m, k, n int, ep *texEpilogue) bool {
	if !w.HasTexRead || w.BatchInvariant || k/4 > int(w.Limits.MaxTextureDimension2D) {
		return false
	}
	s, ok := w.weightTexture(wt)
	if !ok {
		return false
	}
	if m > quantTexRowsMax {
		return w.matMulUnpacked(dst, x, wt, s, bias, m, k, n, ep)
	}
	// x: one row per texture row unless the op that produced it wrote it
	// into its texture (xtex.go), in the texture matmuls' layout.
	xkt, xrp := k/4, 1
	xtex, held := w.xTexHeld(x, m, k)
	if held {
		xrp, _, _, _ = texFit(1, xkt, int(w.Limits.MaxTextureDimension2D), w.Limits.MaxTextureDimension2D)
	} else {
		var err error
		if xtex, err = w.scratchTexture(uint32(xkt), uint32(m)); err != nil {
			w.rec.fail(err)
			return true
		}
		w.pack(F32, w.bind(x), xtex, m, k, xkt, 1, 0, false)
	}
	bb, hasBias := w.spareBinding(), 0 // bound, unread, when there is no bias
	if bias != nil {
		bb, hasBias = w.bind(bias), 1
	}
	ks := qtexKernels[wt.DType()]
	bs, meta, nIn := []binding{bb, w.bind(dst)}, Meta{}, 1
	if ep != nil {
		ks = ep.kernels[wt.DType()]
		bs = append(append([]binding{bb}, ep.in...), w.bind(dst))
		meta, nIn = ep.meta, 1+len(ep.in)
	}
	kern := texKernelFor(ks, m)
	tilesN, tilesM := ceilDiv(n, kern.bn), ceilDiv(m, kern.bm)
	total := tilesN * tilesM
	step := max(1, min(total, int(texSubmitFlops/(2*float64(kern.bm)*float64(kern.bn)*float64(k)))))
	for t0 := 0; t0 < total; t0 += step {
		cnt := min(step, total-t0)
		gx, gy := w.grid1(cnt)
		w.nextFlops = 2 * float64(m) * float64(k) * float64(n) * float64(cnt) / float64(total)
		w.nextBytes = (float64(s.rows*s.kt)*16*float64(tilesM) + float64(m*xkt)*16) * float64(cnt) / float64(total)
		w.dispatchTex(kern.name, nIn, 1, bs, []texBinding{{xtex, false}, {s.tex, false}},
			append(Meta{m, n, k, s.kt, int(s.tex.w), hasBias, tilesN, t0, xrp}, meta...), gx, gy, 1)
		if cnt < total {
			if err := w.flush(); err != nil {
				w.rec.fail(err)
			}
		}
	}
	return true
}

// qtexKernels are the quantized texture mat-vecs by weight dtype, smallest
// row block first (wgsl.QTexKernels): the first whose bm covers M runs,
// else the last, over several row blocks; each workgroup covers bm rows
// and bn columns. qtexLRKernels are their low-rank twins (MatMulLowRank).
var qtexKernels, qtexLRKernels = qtexKernelTables()

// qtexKernelTables sorts wgsl.QTexKernels by weight dtype, in their order:
// the plain kernels and the low-rank twins.
func qtexKernelTables() (plain, lr map[DType][]texMatKernel) {
	plain, lr = map[DType][]texMatKernel{}, map[DType][]texMatKernel{}
	for _, k := range wgsl.QTexKernels {
		f, err := quant.Parse(k.DT)
		if err != nil {
			panic("gpu: wgsl.QTexKernels: " + err.Error())
		}
		out := plain
		if k.LR {
			out = lr
		}
		out[QuantDType(f)] = append(out[QuantDType(f)], texMatKernel{k.Name, k.RM, k.RN * k.WG})
	}
	return plain, lr
}

// matMulUnpacked dequantizes w's texture s into an f32 texture in the
// weights' blocked layout and runs the f32 texture matmul on it (with the
// epilogue ep, when not nil).
func (w *WebGPU) matMulUnpacked(dst, x, wt Tensor, s *shadow, bias Tensor, m, k, n int, ep *texEpilogue) bool {
	ktf := k / 4
	fw, fh, ok := texFitBlocked(n, ktf, w.Limits.MaxTextureDimension2D)
	if !ok {
		return false
	}
	xRowsPer, tw, _, ok := texFit(1, ktf, int(w.Limits.MaxTextureDimension2D), w.Limits.MaxTextureDimension2D)
	if !ok {
		return false
	}
	ft := w.unpacked[fw]
	if ft == nil || ft.h < fh {
		if ft != nil {
			w.retire(ft)
		}
		var err error
		if ft, err = w.newTexture("unpacked weights", fw, fh); err != nil {
			w.rec.fail(err)
			return true
		}
		w.unpacked[fw] = ft
	}
	gx, gy := w.grid1(ceilDiv(n*k/32, 64))
	w.nextBytes = float64(s.rows*s.kt)*16 + 4*float64(n*k)
	w.dispatchTex("quant_unpack_"+strings.ToLower(wt.DType().String()), 0, 0, nil, []texBinding{{s.tex, false}, {ft, true}},
		Meta{n, k, s.kt, int(s.tex.w), ktf, int(fw)}, gx, gy, 1)
	fs := &shadow{tex: ft, rows: n, k: k, dt: F32, kt: ktf}
	w.matMulTexWith(dst, x, fs, bias, w.spareBinding(), m, k, n, ktf, xRowsPer, tw, ep)
	return true
}
