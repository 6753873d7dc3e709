// lowrank_matmul_f16: the output projection with the per-cluster low-rank
// update fused in, for a batch whose rows belong to different clusters (the
// SGMV idea of Punica/S-LoRA, for generated adapters):
//   dst[m, v] = sum_k x[m, k] w[v, k] + bias[v] + sum_j u[m, j] B_c[v, j],
// c = cluster[m], u = alpha * A_c x (lowrank_u, run before). Weights are
// packed f16; the base part is matmul_reg_f16's register block (8 rows x 16
// columns per invocation, no workgroup memory, no barriers: the CPU-adapter
// design). The update is an epilogue on the accumulators before they are
// stored: for each distinct cluster among the block's 8 rows (a uniform
// loop: all lanes of a workgroup share the rows), stream B_c[cols, j] for the
// invocation's 16 columns and add u[row, j] * B_c into the rows of that
// cluster. A block whose rows share one cluster pays R*(16 + 8) loads for
// the update against the main loop's 16*K; every further distinct cluster
// adds 16*R. Rows whose cluster is outside [0, n_clusters) get no update.
// Factor layout: B_k[v, j] = b[b_off + k * b_stride + v * R + j].
// Bindings: x(M,K) f32, w(N,kw) u32 (f16 pairs, kw = ceil(K/2)), bias(N) f32 (any tensor when has_bias =
// 0), u(M,R) f32, cluster(M) i32 (any tensor when has_cluster = 0: every row
// uses cluster 0), b f32 read; dst(M,N) f32 write.
// Meta: M, K, N, has_bias, tiles_n, kw, tile_base, R, n_clusters, b_off,
// b_stride, has_cluster.
// Dispatch: workgroups over (x, y); tile t = tile_base + wid.y * nwg.x +
// wid.x covers rows (t / tiles_n)*BM.. and columns (t % tiles_n)*BN..,
// tiles_n = ceil(N / BN). Rows and columns past the ends are clamped for
// loading and skipped when storing, so any M, K, N, R work.
// Portability: the rank loop runs at most R times per distinct cluster of a
// block (BM * R <= 8 * 1024 with adapt's rank limit), under lavapipe's 65,535.
const TX: u32 = 8u; // invocations per workgroup, along N
const BM: u32 = 8u; // rows per workgroup
const BN: u32 = 128u; // columns per workgroup (TX * 16)
const NONE: u32 = 0xffffffffu; // cluster of a row that gets no update

struct Meta { m: u32, k: u32, n: u32, has_bias: u32, tiles_n: u32, kw: u32, tile_base: u32, r: u32, n_clusters: u32, b_off: u32, b_stride: u32, has_cluster: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> u: array<f32>;
@group(0) @binding(4) var<storage, read> cluster: array<i32>;
@group(0) @binding(5) var<storage, read> b: array<f32>;
@group(0) @binding(6) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

// put stores four columns c.. of row r, those that exist, adding the bias.
fn put(r: u32, c: u32, v: vec4<f32>) {
    if (r >= params.m) {
        return;
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (c + j < params.n) {
            let col = c + j;
            var o = v[j];
            if (params.has_bias != 0u) {
                o = o + bias[col];
            }
            dst[r * params.n + col] = o;
        }
    }
}

// cluster_of is row r's cluster, or NONE for a row past the end or outside
// [0, n_clusters).
fn cluster_of(r: u32) -> u32 {
    if (r >= params.m) {
        return NONE;
    }
    var c = 0;
    if (params.has_cluster != 0u) {
        c = cluster[r];
    }
    if (c < 0 || u32(c) >= params.n_clusters) {
        return NONE;
    }
    return u32(c);
}

//#include matmul_reg_f16_main N_COLS=params.n
    // Low-rank update, one pass per distinct cluster of the block's rows.
    var cl: array<u32, 8>;
    var todo = 0u; // bit i: row r0+i still waits for its update
    for (var i = 0u; i < BM; i = i + 1u) {
        cl[i] = cluster_of(r0 + i);
        if (cl[i] != NONE) {
            todo = todo | (1u << i);
        }
    }
    let rr = params.r;
    let o0 = min(c0 + 0u, lc) * rr;
    let o1 = min(c0 + 1u, lc) * rr;
    let o2 = min(c0 + 2u, lc) * rr;
    let o3 = min(c0 + 3u, lc) * rr;
    let o4 = min(c0 + 4u, lc) * rr;
    let o5 = min(c0 + 5u, lc) * rr;
    let o6 = min(c0 + 6u, lc) * rr;
    let o7 = min(c0 + 7u, lc) * rr;
    let o8 = min(c0 + 8u, lc) * rr;
    let o9 = min(c0 + 9u, lc) * rr;
    let o10 = min(c0 + 10u, lc) * rr;
    let o11 = min(c0 + 11u, lc) * rr;
    let o12 = min(c0 + 12u, lc) * rr;
    let o13 = min(c0 + 13u, lc) * rr;
    let o14 = min(c0 + 14u, lc) * rr;
    let o15 = min(c0 + 15u, lc) * rr;
    loop {
        if (todo == 0u) {
            break;
        }
        let c = cl[firstTrailingBit(todo)];
        var sel = 0u; // rows of cluster c
        for (var i = 0u; i < BM; i = i + 1u) {
            if (cl[i] == c) {
                sel = sel | (1u << i);
            }
        }
        todo = todo & ~sel;
        let bb = params.b_off + c * params.b_stride;
        for (var j = 0u; j < rr; j = j + 1u) {
            let b0 = vec4<f32>(b[bb + o0 + j], b[bb + o1 + j], b[bb + o2 + j], b[bb + o3 + j]);
            let b1 = vec4<f32>(b[bb + o4 + j], b[bb + o5 + j], b[bb + o6 + j], b[bb + o7 + j]);
            let b2 = vec4<f32>(b[bb + o8 + j], b[bb + o9 + j], b[bb + o10 + j], b[bb + o11 + j]);
            let b3 = vec4<f32>(b[bb + o12 + j], b[bb + o13 + j], b[bb + o14 + j], b[bb + o15 + j]);
            if ((sel & 1u) != 0u) {
                let v = vec4<f32>(u[(r0 + 0u) * rr + j]);
                a0_0 = fma(v, b0, a0_0); a0_1 = fma(v, b1, a0_1); a0_2 = fma(v, b2, a0_2); a0_3 = fma(v, b3, a0_3);
            }
            if ((sel & 2u) != 0u) {
                let v = vec4<f32>(u[(r0 + 1u) * rr + j]);
                a1_0 = fma(v, b0, a1_0); a1_1 = fma(v, b1, a1_1); a1_2 = fma(v, b2, a1_2); a1_3 = fma(v, b3, a1_3);
            }
            if ((sel & 4u) != 0u) {
                let v = vec4<f32>(u[(r0 + 2u) * rr + j]);
                a2_0 = fma(v, b0, a2_0); a2_1 = fma(v, b1, a2_1); a2_2 = fma(v, b2, a2_2); a2_3 = fma(v, b3, a2_3);
            }
            if ((sel & 8u) != 0u) {
                let v = vec4<f32>(u[(r0 + 3u) * rr + j]);
                a3_0 = fma(v, b0, a3_0); a3_1 = fma(v, b1, a3_1); a3_2 = fma(v, b2, a3_2); a3_3 = fma(v, b3, a3_3);
            }
            if ((sel & 16u) != 0u) {
                let v = vec4<f32>(u[(r0 + 4u) * rr + j]);
                a4_0 = fma(v, b0, a4_0); a4_1 = fma(v, b1, a4_1); a4_2 = fma(v, b2, a4_2); a4_3 = fma(v, b3, a4_3);
            }
            if ((sel & 32u) != 0u) {
                let v = vec4<f32>(u[(r0 + 5u) * rr + j]);
                a5_0 = fma(v, b0, a5_0); a5_1 = fma(v, b1, a5_1); a5_2 = fma(v, b2, a5_2); a5_3 = fma(v, b3, a5_3);
            }
            if ((sel & 64u) != 0u) {
                let v = vec4<f32>(u[(r0 + 6u) * rr + j]);
                a6_0 = fma(v, b0, a6_0); a6_1 = fma(v, b1, a6_1); a6_2 = fma(v, b2, a6_2); a6_3 = fma(v, b3, a6_3);
            }
            if ((sel & 128u) != 0u) {
                let v = vec4<f32>(u[(r0 + 7u) * rr + j]);
                a7_0 = fma(v, b0, a7_0); a7_1 = fma(v, b1, a7_1); a7_2 = fma(v, b2, a7_2); a7_3 = fma(v, b3, a7_3);
            }
        }
    }
//#include matmul_reg_f16_store
}
