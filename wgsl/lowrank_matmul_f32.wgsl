// lowrank_matmul_f32: the output projection with the per-cluster low-rank
// update fused in, for a batch whose rows belong to different clusters (the
// SGMV idea of Punica/S-LoRA, for generated adapters):
//   dst[m, v] = sum_k x[m, k] w[v, k] + bias[v] + sum_j u[m, j] B_c[v, j],
// c = cluster[m], u = alpha * A_c x (lowrank_u, run before). Weights are
// f32; the base part is matmul_reg_f32's register block (16 rows x 16
// columns per invocation, no workgroup memory, no barriers: the CPU-adapter
// design). The update is an epilogue on the accumulators before they are
// stored: for each distinct cluster among the block's 16 rows (a uniform
// loop: all lanes of a workgroup share the rows), stream B_c[cols, j] for the
// invocation's 16 columns and add u[row, j] * B_c into the rows of that
// cluster. A block whose rows share one cluster pays R*(16 + 16) loads for
// the update against the main loop's 32*K; every further distinct cluster
// adds 16*R. Rows whose cluster is outside [0, n_clusters) get no update.
// Factor layout: B_k[v, j] = b[b_off + k * b_stride + v * R + j].
// Bindings: x(M,K) f32, w(N,K) f32, bias(N) f32 (any tensor when has_bias =
// 0), u(M,R) f32, cluster(M) i32 (any tensor when has_cluster = 0: every row
// uses cluster 0), b f32 read; dst(M,N) f32 write.
// Meta: M, K, N, has_bias, tiles_n, kw, tile_base, R, n_clusters, b_off,
// b_stride, has_cluster.
// Dispatch: workgroups over (x, y); tile t = tile_base + wid.y * nwg.x +
// wid.x covers rows (t / tiles_n)*BM.. and columns (t % tiles_n)*BN..,
// tiles_n = ceil(N / BN). Rows and columns past the ends are clamped for
// loading and skipped when storing, so any M, K, N, R work.
// Portability: the rank loop runs at most R times per distinct cluster of a
// block (BM * R <= 16 * 1024 with adapt's rank limit), under lavapipe's 65,535.
//#include lowrank_prologue BM_ROWS=16 W_ELEM=f32
//#include matmul_reg_f32_main N_COLS=params.n
//#include lowrank_epilogue_open CL_N=16
//#include lowrank_epilogue_rows8_15
        }
    }
//#include matmul_reg_f32_store
}
