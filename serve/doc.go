// Package serve is Chameleon's HTTP server: an OpenAI-compatible
// completions and chat completions API (POST /v1/completions,
// /v1/chat/completions, GET /v1/models), /tokenize, /detokenize, /health
// (and /healthz) and Prometheus /metrics, in front of a
// continuous-batching scheduler. NewHTTPServer adds the connection-level
// defences (timeouts that suit streaming, a connection cap, a Host
// allow-list against DNS rebinding); request bodies must be sent as
// application/json (415 otherwise), so that a web page cannot post to a
// local server without a CORS preflight, which is answered only for
// Options.CORSOrigins. Options.APIKey asks for a Bearer key, Options.Log
// gets one slog line per request (middleware.go).
//
// Chat (chat.go). A chat request's messages are rendered by a ChatTemplate
// (Jinja, github.com/ardanlabs/jinja: the model's own, a file, or
// DefaultChatTemplate's plain-text transcript for base models) into one
// prompt, which then runs exactly as a completion of that text with the
// template's stop strings added; only the response's shape differs
// (chat.completion, chat.completion.chunk). Every choice carries the
// Extension object "chameleon": adapted or not, which cluster, and why not.
//
// Scheduler (scheduler.go; options.go, admit.go, step.go). One goroutine
// owns the model, its backend and one KV cache of Slots sequences x NCtx
// tokens. Requests wait in a bounded FIFO queue (full: ErrQueueFull, HTTP
// 429; with NoQueue a request is accepted only when free slots take it now).
// Before every step the scheduler admits waiting sequences into free slots
// (a request with n choices or several prompts is several sequences,
// admitted in order as slots free up), then runs ONE ragged ForwardLast over
// every slot: a newly admitted sequence feeds the next chunk of its prompt
// (at most PrefillChunk tokens) while the others feed their last sampled
// token, so prefill and decode share a forward. A sequence samples once its
// whole prompt is in. Finished or cancelled sequences free their slot at
// once (its cache length is reset to 0; stale keys past it are never read).
//
// Sampling. Backend.Sample takes one SampleParams for all its rows, so the
// rows that sample in a step are grouped by their (normalised) params, each
// group's logits rows are gathered with Backend.Rows and sampled with one
// Sample call. Every sequence draws its uniform from its own RNG, seeded
// with the request's seed + the choice index (as model.Generate seeds
// prompt i with Seed+i), once per sampled token: what a sequence produces
// does not depend on what else is in the batch. The cache always has Slots
// rows, so every forward dispatches the same kernels whether a request runs
// alone or among others: greedy (and seeded) outputs are identical.
//
// Invariants: only the scheduler goroutine touches the Model and its
// backend (the cache memory's host half, below, runs on an admitter
// goroutine that touches neither); the scheduler never blocks on a client (events go to an
// unbounded per-request mailbox); every submitted request ends with exactly
// one terminal event (finished, or an error).
//
// Adaptation (adaptive.go). Adaptive serves a model with an adapter
// (package adapt): ChamaleonLLM's batch-aware low-rank update of the output
// projection, logits = W h + alpha * B_c (A_c h), with c the row's cluster.
// When a window of sequences is admitted (those admitted in one round,
// optionally held for Options.AdaptWindow), the scheduler calls
// Model.Group once with their prompts; each gets a cluster:
//   - online (hyper adapters storing training centroids, the default for
//     them): the prompt's feature (its mean token embedding or mean final
//     hidden state, L2-normalised, as the adapter says) goes to the
//     nearest centroid, unless the adapter's gate or self-check keeps it at
//     the base model; every centroid's factors are computed once at
//     start;
//   - window: k-means over the window's features, k = ceil(n /
//     ClusterSize), and the hyper-network on each cluster's mean; the
//     factors live in a pool of one row per slot, reused once every
//     sequence of a cluster has left;
//   - tuned (a gated basis with Options.Tune, serve --tune-steps): online
//     assignment, then each centroid the window uses has its generated
//     gates tuned by a few Adam steps against its prompts' own tokens
//     (adapt.PlanOptions.Tune, as generate runs it); the tuned gates take
//     free rows of a pool of one gate row per slot (adapt.Runtime.PlanGates);
//   - static (lora): every adapted sequence uses the one pair.
//
// Online assignment needs the prompt's features and, for a self-checked
// adapter, its losses with and without the update: a base pass over the
// prompt. For a head-only adapter with hidden-state features (the shipped
// default) the scheduler's own chunked prefill is that pass
// (adaptive_prefill.go): instead of calling Group it leaves the slot
// pending (ClusterPending, base logits), each chunk's final hidden rows
// feed an adapt.PromptRows, and the step that feeds the prompt's last
// token decides its cluster (adapt.Runtime.AssignPrefilled) before that
// step's head, so its first sampled token is adapted and the prompt runs
// through the model once. Options.GroupApart, window and tuned modes, and
// the token cache memory (whose admission needs the cluster at once) keep
// Group.
//
// Every step computes the logits of all rows in ONE fused adapt.Ops.Logits
// call with a per-row cluster tensor; unadapted rows get cluster -1, which
// is the base model's logits bit for bit. A request turns adaptation off
// with the extension field "adapt": false (default true on a server with an
// adapter; "adapt": true on one without is a 400), and, on a server with
// the token cache memory, keeps itself out of the memory with "cache":
// false (served without the cache, its prompt joins no pool; "cache":
// true on a server without the memory is a 400). Metrics:
// chameleon_clusters_per_batch (gauge) and chameleon_step_clusters
// (histogram) count the distinct adaptations per step (unadapted sequences
// count as one), chameleon_sequences_total{adaptation="adapted"|"base"} the
// admitted sequences, chameleon_adapt_group_seconds the grouping time.
//
// Token cache memory (cache.go, adaptive_cache.go; Options.Cache, `chameleon
// serve --cache`, OFF by default). The training-free token cache of package
// adapt (p' = (1-own-pool) p + own q_own + pool q_pool) for requests that
// arrive one by one, where a pool cannot be a batch's k-means cluster: an
// adapt.CacheMemory keeps pools keyed by clusters found at inference time.
// A prompt the adapter assigns to a training centroid (online mode; with
// "adapt": false its nearest centroid unless the gate closes) uses that
// centroid's pool; one the gate or self-check keeps at the base model
// (far from every centroid: the held-out-like inputs the cache helps most
// offline) joins the nearest run-time cluster within CacheRadius (default
// the gate's radius) of its feature or starts one (leader clustering,
// running-mean centroid; at most CacheClusters, least recently used
// evicted). Window mode keys every prompt by its feature; a static adapter
// or a model without one (Base) uses one global pool. Each pool keeps its
// CacheWindow most recent prompts with their token counts and their
// per-position losses under the served model (one extra scoring forward
// over each admitted prompt, its cluster's update included). At admission
// (in queue order, after grouping) a prompt gets a SNAPSHOT of its pool
// taken BEFORE it joins: the pool it is served with excludes itself (its
// prompt is in its own counts anyway), and the choices of one prompt share
// it. Its two weights are chosen then, by leave-one-out
// (adapt.ChooseCacheWeights) over the pool's prompts AND its own, its own
// term scored against exactly the pool it gets (adapt.MemoryConfig.WithSelf):
// a new pool so gets the own-token weight its prompt supports, and on the
// benchmark's stream this reads 0.029 nats/token better than the pool's own
// weights chosen on its prompts alone (docs/adapt-bench/cache). Per slot, the sequence's own counts (prompt and generated
// tokens so far) and its snapshot's pool counts live on the device; each
// step's logits (Slots, V) go through one LogSoftmax and one
// adapt.Ops.CacheMix in which every row reads only its slot's counts and
// weights, so a request's output is a function of the memory at its
// admission and of nothing else in its batch (the path without the cache
// is unchanged). Each choice's extension reports its pool, the pool's size
// and the weights ("cache"); /metrics has chameleon_cache_memory_clusters,
// _run_clusters, _prompts, _tokens and _evictions_total, Stats.Memory the
// same. The cost of the feature is cross-request influence: a request's
// output depends on what earlier clients sent, and their prompts' tokens
// shape it, which is why it is opt-in. An admission's device half (the
// prompt's losses, hidden states and memory key) runs on the scheduler
// goroutine; the memory's half (choosing the pool's weights with the
// prompt in: 0.1-0.3 s for a full neural pool on a 2-core machine) runs on
// one admitter goroutine in arrival order (cache_admit.go), while the
// admitted slot sits out the steps and the others go on; the snapshots are
// those of admitting one request at a time.
//
// Neural cache (ncache.go, ncache_model.go; Options.CacheNeural, on with
// `chameleon serve --cache` unless --cache-neural=false). The memory's
// pools also keep their prompts' unit final hidden states (the ln_f output
// the head reads: NeuralModel.PromptHidden, from the online assignment's
// self-check pass where it kept them, else one scoring forward) as keys,
// each valued by the token that
// followed it, at most CacheKeys positions a pool (oldest prompts evicted,
// the newest kept); the mixture gains q_nOwn and q_nPool (package adapt's
// neural cache), its four weights and theta chosen at admission by
// leave-one-out over the pool with the prompt in, from terms the memory
// keeps incrementally. The snapshot carries the pool's keys. On the device
// one key buffer holds per slot its snapshot's pool keys (written at
// install) and an own block as long as the context: the prompt's keys,
// then one per step, the row's query, written by adapt.Ops.NeuralMix,
// whose value (the next token) is set when it is fed. Each step runs
// through NeuralModel.ForwardLastHidden (a pass copies the final hidden
// states; it turns the fused head off, so logits equal ForwardLast's to
// rounding), then CacheMix with the token weights rescaled and NeuralMix,
// each row reading only its slot's region. The buffer is Slots x
// (max(CacheKeys, NCtx) + NCtx) keys of NEmbd floats; a size over the 128
// MiB storage binding or NeuralMix's loops is refused at start. The
// extension adds pool_keys, neural_own, neural_pool and theta; /metrics
// chameleon_cache_memory_keys.
package serve
