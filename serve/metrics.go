package serve

import (
	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus metrics, on a registry of its own
// (so several servers can live in one process, as in tests).
type metrics struct {
	reg *prometheus.Registry

	batch            prometheus.Gauge   // sequences in the running batch
	clusters         prometheus.Gauge   // distinct adaptations in the batch (1 without adaptation)
	tokensPerSec     prometheus.Gauge   // generated tokens per second over the last ~1 s
	healthy          prometheus.Gauge   // 1 while the device works
	tokens           prometheus.Counter // generated (sampled) tokens
	completionTokens prometheus.Counter // tokens of finished choices
	promptTokens     prometheus.Counter
	rejected         prometheus.Counter // 429s
	cancelled        prometheus.Counter // runs abandoned by their client
	failed           prometheus.Counter // failed steps
	ttft             prometheus.Histogram
	latency          prometheus.Histogram
	step             prometheus.Histogram
	requests         *prometheus.CounterVec // by HTTP status code
	clustersHist     prometheus.Histogram   // distinct adaptations per step
	sequences        *prometheus.CounterVec // admitted sequences by adaptation: "adapted" or "base"
	group            prometheus.Histogram   // Model.Group's duration per admission window
}

// latencyBuckets span 5 ms to ~80 s: lavapipe is slow, real GPUs fast.
var latencyBuckets = prometheus.ExponentialBuckets(0.005, 2, 15)

// newMetrics registers the metrics on reg (nil: a fresh registry).
func newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	g := func(name, help string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "chameleon", Name: name, Help: help})
		f(x)
		return x
	}
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "chameleon", Name: name, Help: help})
		f(x)
		return x
	}
	h := func(name, help string) prometheus.Histogram {
		x := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "chameleon", Name: name, Help: help, Buckets: latencyBuckets})
		f(x)
		return x
	}
	m := &metrics{
		reg:              reg,
		batch:            g("batch_size", "Sequences in the running batch."),
		clusters:         g("clusters_per_batch", "Distinct adaptation clusters in the running batch (1 without adaptation)."),
		tokensPerSec:     g("tokens_per_second", "Generated tokens per second over the last second of work."),
		healthy:          g("device_healthy", "1 while the compute device works, 0 once it is lost."),
		tokens:           c("generated_tokens_total", "Tokens sampled."),
		completionTokens: c("completion_tokens_total", "Tokens of finished choices."),
		promptTokens:     c("prompt_tokens_total", "Prompt tokens of accepted requests."),
		rejected:         c("rejected_requests_total", "Requests refused because the queue was full."),
		cancelled:        c("cancelled_requests_total", "Requests abandoned by their client while queued or running."),
		failed:           c("failed_steps_total", "Forward steps that failed (their sequences got an error)."),
		ttft:             h("time_to_first_token_seconds", "Time from submission to the first sampled token."),
		latency:          h("request_duration_seconds", "Time from receiving a completion request to its last byte."),
		step:             h("step_duration_seconds", "Duration of one batched forward and sampling step."),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "chameleon", Name: "requests_total",
			Help: "Completion requests by HTTP status code; 499: the client left before its response was complete."}, []string{"code"}),
	}
	f(m.requests)
	m.clustersHist = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "chameleon", Name: "step_clusters",
		Help:    "Distinct adaptation clusters per forward step (unadapted sequences count as one).",
		Buckets: prometheus.LinearBuckets(1, 1, 16)})
	f(m.clustersHist)
	m.sequences = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "chameleon", Name: "sequences_total",
		Help: "Sequences (choices) admitted, by adaptation: adapted or base."}, []string{"adaptation"})
	f(m.sequences)
	m.group = h("adapt_group_seconds", "Time to group one admission window for adaptation (features, assignment or k-means, hyper-network).")
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.healthy.Set(1)
	m.clusters.Set(1)
	return m
}

// bind adds the gauges read from the scheduler.
func (m *metrics) bind(s *Scheduler) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "chameleon", Name: "queue_depth", Help: "Requests waiting for a slot.",
	}, func() float64 { return float64(s.Stats().Queued) }))
	if s.tc == nil {
		return
	}
	for _, g := range []struct {
		name, help string
		f          func(adapt.MemoryStats) int
	}{
		{"cache_memory_clusters", "Token cache memory: pools holding at least one prompt.", func(m adapt.MemoryStats) int { return m.Clusters }},
		{"cache_memory_run_clusters", "Token cache memory: run-time clusters (inputs without a training centroid).", func(m adapt.MemoryStats) int { return m.RunClusters }},
		{"cache_memory_prompts", "Token cache memory: prompts pooled over all pools.", func(m adapt.MemoryStats) int { return m.Prompts }},
		{"cache_memory_tokens", "Token cache memory: tokens of the pooled prompts.", func(m adapt.MemoryStats) int { return m.Tokens }},
		{"cache_memory_keys", "Token cache memory: neural cache keys (prompt positions' hidden states) held over all pools; 0 without the neural cache.", func(m adapt.MemoryStats) int { return m.Keys }},
	} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "chameleon", Name: g.name, Help: g.help},
			func() float64 { return float64(g.f(s.tc.mem.Stats())) }))
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "chameleon", Name: "cache_memory_evictions_total",
		Help: "Token cache memory: run-time clusters evicted (least recently used)."}, func() float64 { return float64(s.tc.mem.Stats().Evicted) }))
}
