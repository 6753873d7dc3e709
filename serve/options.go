package serve

import (
	"cmp"
	"fmt"
	"log/slog"
	"time"

	"github.com/chameleon-llm/chameleon/model"
)

// Options configures a Scheduler and a Server. Zero values take the
// defaults named; negative ones are refused (but Queue's NoQueue).
type Options struct {
	Slots int // sequences decoded together (KV cache slots of NCtx tokens); default 8
	// Queue is how many requests may wait for a slot; default 64. NoQueue:
	// none wait: a request is accepted only when free slots take all its
	// sequences now (else ErrQueueFull), and MaxChoices is at most Slots.
	Queue        int
	PrefillChunk int           // prompt tokens one sequence feeds per step at most; default 64
	MaxTokens    int           // limit on max_tokens; default the context
	MaxN         int           // limit on n; default 8
	MaxChoices   int           // limit on prompts x n per request; default 32
	MaxLogprobs  int           // limit on logprobs; default 5
	MaxBodyBytes int64         // request body limit; default 1 MiB
	ModelName    string        // the model's id in the API; default "chameleon"
	RetryAfter   time.Duration // Retry-After of a 429; default 1 s
	// AdaptWindow holds an adapted request in the queue until it has
	// waited this long, so that the requests arriving within the window
	// are admitted, and grouped by Model.Group, together (window
	// clustering); it delays the queue behind it too. 0: a window is
	// whatever arrived during the previous step.
	AdaptWindow time.Duration
	// GroupApart makes an adapted prompt's online assignment run its own
	// base pass at admission (Model.Group) even where the prompt's prefill
	// could give it (ClusterPending): the earlier path, kept to compare
	// against. It costs each adapted prompt a second prefill.
	GroupApart bool
	// Cache turns on the token cache as a cluster memory (cache.go, the
	// package doc): each sequence's next-token distribution mixes in its
	// own tokens and the prompts of earlier requests of its cluster. Off
	// by default: it makes a request's output depend on earlier requests
	// and pools their prompts' tokens across clients. The model must be a
	// CacheModel (Base and Adaptive are).
	Cache bool
	// CacheWindow is how many recent prompts each memory pool keeps;
	// default adapt.DefaultMemoryWindow (64).
	CacheWindow int
	// CacheClusters bounds the memory's run-time clusters (least recently
	// used evicted); default adapt.DefaultMemoryClusters (64).
	CacheClusters int
	// CacheRadius is the squared feature distance within which an input
	// without a training centroid joins a run-time cluster; 0: the
	// adapter's gate radius (none: every such input joins one cluster).
	CacheRadius float64
	// CacheNeural adds the neural cache to the memory (ncache.go): each
	// pool also keeps its prompts' final hidden states as keys, and every
	// sequence mixes in what followed contexts like its current one, in
	// its own text and in its pool (four weights and a key sharpness
	// chosen per pool by leave-one-out). The model must be a NeuralModel
	// (Base and Adaptive are).
	CacheNeural bool
	// CacheKeys bounds the neural keys each pool keeps (oldest prompts
	// evicted); default adapt.DefaultMemoryKeys (2048). The device holds
	// Slots x (max(CacheKeys, NCtx) + NCtx) keys of NEmbd floats, which must
	// fit a 128 MiB storage binding; the host up to CacheKeys x NEmbd
	// floats (and 112 bytes of float64 terms per key) per pool, over the trained
	// centroids' pools and CacheClusters run-time ones.
	CacheKeys int
	// CacheMaxKeys bounds the neural keys the memory holds over all its
	// pools (the host memory's bound: adapt.MemoryConfig.MaxKeys), least
	// recently used pools evicted whole; 0: no bound beyond (centroids +
	// CacheClusters + 1) x CacheKeys (Scheduler.MemoryBound says it).
	CacheMaxKeys int

	// The HTTP layer's options (Server only).

	// Chat renders /v1/chat/completions messages; nil: DefaultChat with
	// the tokenizer's <|endoftext|>.
	Chat *ChatTemplate
	// CORSOrigins are the origins a browser page may call from ("*": any);
	// none: no CORS headers, and a preflight gets 405.
	CORSOrigins []string
	// APIKey, when set, must come as "Authorization: Bearer KEY" on every
	// request but /health and /healthz (401 otherwise).
	APIKey string
	// Log gets one line per request; nil: none.
	Log *slog.Logger
}

// NoQueue as Options.Queue: no request waits for a slot.
const NoQueue = -1

// check refuses values that cannot be honoured.
func (o Options) check() error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"Slots", int64(o.Slots)}, {"PrefillChunk", int64(o.PrefillChunk)}, {"MaxTokens", int64(o.MaxTokens)},
		{"MaxN", int64(o.MaxN)}, {"MaxChoices", int64(o.MaxChoices)}, {"MaxLogprobs", int64(o.MaxLogprobs)},
		{"MaxBodyBytes", o.MaxBodyBytes}, {"RetryAfter", int64(o.RetryAfter)}, {"AdaptWindow", int64(o.AdaptWindow)},
		{"CacheWindow", int64(o.CacheWindow)}, {"CacheClusters", int64(o.CacheClusters)}, {"CacheKeys", int64(o.CacheKeys)},
		{"CacheMaxKeys", int64(o.CacheMaxKeys)}} {
		if f.v < 0 {
			return fmt.Errorf("serve: Options.%s is %d: want a positive value (0: the default)", f.name, f.v)
		}
	}
	if !(o.CacheRadius >= 0) {
		return fmt.Errorf("serve: Options.CacheRadius is %g: want a squared distance >= 0 (0: the gate's radius)", o.CacheRadius)
	}
	if !o.Cache && (o.CacheWindow != 0 || o.CacheClusters != 0 || o.CacheRadius != 0) {
		return fmt.Errorf("serve: Options.CacheWindow, CacheClusters and CacheRadius configure the token cache: set Options.Cache too")
	}
	if !o.Cache && o.CacheNeural {
		return fmt.Errorf("serve: Options.CacheNeural adds the neural cache to the token cache memory: set Options.Cache too")
	}
	if !o.CacheNeural && (o.CacheKeys != 0 || o.CacheMaxKeys != 0) {
		return fmt.Errorf("serve: Options.CacheKeys and CacheMaxKeys bound the neural cache's keys: set Options.CacheNeural too")
	}
	if o.Queue < 0 && o.Queue != NoQueue {
		return fmt.Errorf("serve: Options.Queue is %d: want a positive value (0: the default; NoQueue: none)", o.Queue)
	}
	if slots := cmp.Or(o.Slots, 8); o.Queue == NoQueue && o.MaxChoices > slots {
		return fmt.Errorf("serve: Options.MaxChoices %d exceeds the %d slots: without a queue such a request could never be accepted", o.MaxChoices, slots)
	}
	return nil
}

func (o Options) withDefaults(cfg model.Config) Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Slots, 8)
	if o.Queue != NoQueue {
		def(&o.Queue, 64)
	}
	def(&o.PrefillChunk, 64)
	def(&o.MaxTokens, cfg.NCtx)
	def(&o.MaxN, 8)
	def(&o.MaxChoices, 32)
	def(&o.MaxLogprobs, 5)
	if o.Queue == NoQueue {
		o.MaxChoices = min(o.MaxChoices, o.Slots)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.ModelName == "" {
		o.ModelName = "chameleon"
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	return o
}
