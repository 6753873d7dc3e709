// Package cluster groups sequences by what they are about, the first half of
// Chameleon's batch-aware adaptation: per-sequence features computed on the
// GPU, k-means over them (WGSL kernels, with a plain-Go reference), a batch
// former that gives every batch sequences of one cluster, and centroids that
// can be saved and used to assign new sequences online.
//
// Dimension legend: B sequences in a batch, T tokens per padded sequence, C
// channels (model width), V vocabulary, N points (features) clustered, K
// clusters.
//
// Feature: the mean of a sequence's token embeddings (rows of wte) over its
// real tokens only, scaled to unit L2 norm. Padding positions (t >= length)
// are never read. An empty sequence or an all-zero mean gives a zero feature
// (not a division by zero); a NaN or Inf anywhere in the mean makes the whole
// feature NaN, and KMeans rejects non-finite features with an error.
//
// k-means: k-means++ seeding from a seeded host RNG (the distances it
// samples from are computed by the assignment kernel, one centroid at a
// time), then Lloyd iterations until no assignment changes or MaxIter
// (default 100). Assignment is by squared Euclidean distance, ties to the
// lowest cluster index. Features whose largest magnitude lies outside
// [2^-32, 2^32] are clustered scaled by a power of two (exact, and no
// comparison changes) so that the f32 squared distances neither overflow
// to +Inf nor underflow to 0, and the results are scaled back. Centroids are plain means (no renormalisation: on
// unit-norm features Euclidean k-means is the natural objective, each Lloyd
// step cannot increase it, and the mean is exactly the cluster feature the
// hyper-network consumes); they are summed as offsets from the cluster's
// first member, which is exact for identical members, so identical inputs
// end with zero distances and stop. An empty cluster is re-seeded with the point
// farthest from its own centroid among clusters of two or more points (and
// keeps its previous centroid when there is no such point, e.g. identical
// inputs). Everything is deterministic for a seed on a given backend.
//
// Ops is the small kernel interface k-means is written against, an
// extension of gpu.Backend in the pattern package gpu describes (extend.go):
// it embeds the backend the kernels run on, GPUOps runs them as WGSL on a
// *gpu.WebGPU and RefOps in plain Go on a gpu.Host, OpsFor picks one, and
// Conformance is the exported suite that checks one against the other. The
// cluster kernels are kept out of gpu.Backend, which model code uses.
//
// Errors: non-finite features, k larger than the batch, bad files are
// returned as errors; shape and dtype mismatches are programmer errors and
// panic with a "cluster: " prefix.
package cluster
