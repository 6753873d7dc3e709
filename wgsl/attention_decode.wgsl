// attention_decode: attention for one new token per sequence (Tq = 1):
// decode of many sequences, each at its own position. For sequence b with
// qlen[b] >= 1, p = start[b], head h, D = C/H:
//   dst[b,0,hD:(h+1)D] = softmax_j(q·K[b,j,hD:(h+1)D] / sqrt(D)) · V[b,j,hD:(h+1)D],  j = 0..p
// with q = qkv[b,0,hD:(h+1)D]; a sequence with qlen[b] <= 0 gets zeros.
// Bindings: qkv(B,1,3C), kCache, vCache (bound to sequences
// [seq_base, seq_base+nseq): (nseq,Tmax,C)), start(B) i32, qlen(B) i32 read;
// dst(B,1,C) write.
// Meta: nseq, seq_base, Tq (= 1), C, Tmax, H, D, nqb (unused, 1), scale.
// Dispatch: one workgroup per (sequence of the chunk, head): nseq*H
// workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
// The keys are dealt round-robin to the WG invocations; each keeps its own
// online softmax (running max, sum, f32 accumulator over D) over KB keys at
// a time, and the WG partial results are merged once at the end through
// workgroup memory (a handful of barriers per workgroup, whatever the context).
// Bounds: p is clamped into [0, Tmax-1], so a caller breaking
// start[b]+qlen[b] <= Tmax never makes the kernel read out of bounds.
// D <= 4*DMAX4 (the host checks); head columns past D are read clamped and
// multiplied by zero.
// Portability: llvmpipe/lavapipe stops every loop of an invocation after
// 65535 iterations in total (LP_MAX_TGSI_LOOP_ITERATIONS); an invocation
// here runs ~ (p/(KB*WG))*(2*ceil(D/4)+1) iterations, enough for ~500k keys at D = 64.
//#include attention_decode_head

//#include attention_cache_bindings

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
//#include attention_decode_start SEQ_BASE=params.seq_base

//#include attention_decode_body Q_SRC=qkv Q_ROW=b*3u*c+h*d
