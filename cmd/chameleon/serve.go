package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/serve"
)

// serveCmd is `chameleon serve`: the OpenAI-compatible completions server
// (package serve), adapting every request with --adapter (default: the
// embedded hyper-network, when this build has one) unless the request says
// "adapt": false. It stops on SIGINT/SIGTERM (or when the command's context
// ends): new requests get 503, in-flight ones get --grace to finish and
// then fail with 503.
func serveCmd() *cobra.Command {
	var addr, adapterFlag, mode, chatFile, logFormat string
	mf := modelFlags{inference: true, server: true, plainHead: func() bool { return adapterFlag == "none" }}
	var grace time.Duration
	var opt serve.Options
	var ao serve.AdaptOptions
	var lim serve.Limits
	c := &cobra.Command{
		Use:   "serve [--model M] [--adapter FILE|default|none] [--addr 127.0.0.1:8080] [--slots N] [--queue N]",
		Short: "Serve an OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/models, /tokenize, /detokenize, /health, /metrics) with continuous batching",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			if err := checkServeOptions(&opt, ao, grace, lim, logFormat, mf.path, cmd.ErrOrStderr()); err != nil {
				return err
			}
			s, err := mf.load() // without --model: the embedded default model
			if err != nil {
				return err
			}
			defer s.close()
			if opt.Chat, err = chatTemplate(mf.path, chatFile, s.tok); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "chameleon: chat template: %s\n", opt.Chat.Origin)
			ao.Mode = serve.AdaptMode(mode)
			sm, err := serveModel(s, adapterFlag, ao, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if ad, ok := sm.(*serve.Adaptive); ok {
				defer ad.Close() // runs last: every path below stops the scheduler first
			}
			srv, err := serve.New(sm, s.tok, opt)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				srv.Shutdown(context.Background()) //nolint:errcheck // nothing was submitted
				return fmt.Errorf("listening on %s: %w", addr, err)
			}
			hs, cl, err := serve.NewHTTPServer(srv, ln, lim)
			if err != nil {
				ln.Close()
				srv.Shutdown(context.Background()) //nolint:errcheck // nothing was submitted
				return err
			}
			announceCache(cmd.ErrOrStderr(), opt, srv.Scheduler())
			announceServe(cmd.ErrOrStderr(), srv, ln, s)
			return serveUntilSignal(cmd, srv, hs, cl, grace)
		},
	}
	mf.add(c)
	f := c.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8080", "listen address (host:port; port 0 picks a free one)")
	f.IntVar(&opt.Slots, "slots", 8, "sequences decoded together (KV-cache slots of the full context)")
	f.IntVar(&opt.Queue, "queue", 64, "requests waiting for a slot at most; beyond, 429 with Retry-After (0: no queue: a request is accepted only when free slots take all its choices at once)")
	f.IntVar(&opt.PrefillChunk, "prefill-chunk", 64, "prompt tokens one sequence feeds per step at most")
	f.IntVar(&opt.MaxTokens, "max-tokens", 0, "largest max_tokens a request may ask (0: the context)")
	f.IntVar(&opt.MaxN, "max-n", 8, "largest n a request may ask")
	f.Int64Var(&opt.MaxBodyBytes, "max-body", 1<<20, "request body limit in bytes (413 beyond)")
	f.StringVar(&opt.ModelName, "name", "", "model id in the API (default: the --model file or directory name)")
	f.DurationVar(&grace, "grace", 30*time.Second, "on SIGINT/SIGTERM, how long in-flight requests may take to finish")
	f.StringVar(&adapterFlag, "adapter", "default", "adapter file (adapt.Save's safetensors), \"default\" (the embedded hyper-network; none embedded: no adaptation) or \"none\"")
	f.StringVar(&mode, "adapt-mode", "", "hyper adapters: online (nearest training centroid), window (k-means over each admission window) or tuned (online, each admission window's clusters tuning a gated basis's gates on their prompts: --tune-steps) (default: tuned with --tune-steps, else online when the adapter stores centroids)")
	f.IntVar(&ao.ClusterSize, "cluster-size", 0, "window mode: a window of n adapted sequences gets ceil(n / this) clusters (0: 16)")
	f.Uint64Var(&ao.Seed, "adapt-seed", 0, "window mode: k-means++ seed")
	f.IntVar(&ao.Tune.Steps, "tune-steps", 0, "a gated basis (adapt train --method hyper-basis): Adam steps on the gates of each admission window's clusters against their prompts' own tokens before decoding (0: none; mode tuned)")
	f.Float64Var(&ao.Tune.LR, "tune-lr", 0.03, "the tuning's Adam rate (adapt tune chooses one on validation: 0.03 for the default adapter)")
	f.DurationVar(&opt.AdaptWindow, "adapt-window", 0, "hold adapted requests this long in the queue so that those arriving together are grouped together (0: what arrived during the last step)")
	addCacheFlags(c, &opt)
	f.StringVar(&chatFile, "chat-template", "", "Jinja chat template FILE for /v1/chat/completions (default: the model's own, GGUF tokenizer.chat_template or tokenizer_config.json, else a plain-text User:/Assistant: transcript)")
	f.StringSliceVar(&opt.CORSOrigins, "cors-origin", nil, "origins a browser page may call from, e.g. http://localhost:3000, or * (repeatable; default none: no CORS)")
	f.StringVar(&opt.APIKey, "api-key", "", "require Authorization: Bearer KEY on every route but /health and /healthz (default: $CHAMELEON_API_KEY; empty: no key)")
	f.StringVar(&logFormat, "log", "text", "request log on stderr, one line per request: text, json or off")
	addLimitFlags(c, &lim)
	return c
}

// checkServeOptions checks the flags (checkServeFlags, the HTTP limits),
// sets the request log (on w), takes the API key from $CHAMELEON_API_KEY
// when --api-key is not given and names the model after modelPath (the
// --model file or directory) when --name is not given.
func checkServeOptions(opt *serve.Options, ao serve.AdaptOptions, grace time.Duration, lim serve.Limits, logFormat, modelPath string, w io.Writer) error {
	if err := checkServeFlags(opt, ao, grace); err != nil {
		return err
	}
	if err := checkLimits(lim); err != nil {
		return err
	}
	var err error
	if opt.Log, err = requestLogger(logFormat, w); err != nil {
		return err
	}
	if opt.APIKey == "" {
		opt.APIKey = os.Getenv("CHAMELEON_API_KEY")
	}
	if opt.ModelName == "" {
		opt.ModelName = "chameleon-default"
		if modelPath != "" {
			opt.ModelName = filepath.Base(filepath.Clean(modelPath))
		}
	}
	return nil
}

// announceServe says on w what is served where.
func announceServe(w io.Writer, srv *serve.Server, ln net.Listener, s *session) {
	o := srv.Scheduler().Options()
	queue := fmt.Sprintf("queue %d", o.Queue)
	if o.Queue == serve.NoQueue {
		queue = "no queue"
	}
	fmt.Fprintf(w, "chameleon: serving %q on http://%s (%s; %d slots x %d tokens, %s)\n",
		o.ModelName, ln.Addr(), s.label, o.Slots, s.m.Cfg.NCtx, queue)
}

// serveUntilSignal serves HTTP on cl until SIGINT or SIGTERM (or the
// listener fails), then gives in-flight requests grace to finish.
func serveUntilSignal(cmd *cobra.Command, srv *serve.Server, hs *http.Server, cl net.Listener, grace time.Duration) error {
	log := cmd.ErrOrStderr()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(cl) }()

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-served:
		srv.Shutdown(context.Background()) //nolint:errcheck
		return err
	}
	stop() // a second signal kills the process
	fmt.Fprintf(log, "chameleon: shutting down: in-flight requests have %v to finish\n", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	httpDone := make(chan error, 1)
	go func() { httpDone <- hs.Shutdown(sctx) }() // stops accepting, waits for the handlers
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Fprintf(log, "chameleon: %v\n", err)
	}
	// The handlers return once the scheduler has ended their runs;
	// give them a moment to write, then close what is left.
	select {
	case err := <-httpDone:
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	case <-time.After(5 * time.Second):
	}
	hs.Close()
	fmt.Fprintln(log, "chameleon: stopped")
	return nil
}

// requestLogger is the per-request log of --log: slog's text or JSON
// lines on w, or nil for off.
func requestLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	case "off":
		return nil, nil
	}
	return nil, fmt.Errorf("--log %q: want text, json or off", format)
}

// checkServeFlags refuses values that cannot be honoured (rather than
// replacing them by defaults) and maps --queue 0 to serve.NoQueue.
func checkServeFlags(opt *serve.Options, ao serve.AdaptOptions, grace time.Duration) error {
	for _, f := range []struct {
		flag string
		v    int64
		min  int64
		note string
	}{
		{"--slots", int64(opt.Slots), 1, ""},
		{"--queue", int64(opt.Queue), 0, " (0: no queue)"},
		{"--prefill-chunk", int64(opt.PrefillChunk), 1, ""},
		{"--max-tokens", int64(opt.MaxTokens), 0, " (0: the context)"},
		{"--max-n", int64(opt.MaxN), 1, ""},
		{"--max-body", opt.MaxBodyBytes, 1, ""},
		{"--cluster-size", int64(ao.ClusterSize), 0, " (0: 16)"},
	} {
		if f.v < f.min {
			return fmt.Errorf("%s %d: want at least %d%s", f.flag, f.v, f.min, f.note)
		}
	}
	if err := checkCacheFlags(opt); err != nil {
		return err
	}
	if err := ao.Tune.Check(); err != nil {
		return fmt.Errorf("--tune-steps/--tune-lr: %w", err)
	}
	if grace < 0 || opt.AdaptWindow < 0 {
		return fmt.Errorf("--grace %v, --adapt-window %v: want durations of 0 or more", grace, opt.AdaptWindow)
	}
	if opt.Queue == 0 {
		opt.Queue = serve.NoQueue
	}
	return nil
}

// checkCacheFlags refuses cache memory flags that cannot be honoured and
// turns the neural cache off without --cache (serve and soak).
func checkCacheFlags(opt *serve.Options) error {
	if !opt.Cache && (opt.CacheWindow != 0 || opt.CacheClusters != 0 || opt.CacheRadius != 0) {
		return fmt.Errorf("--cache-window, --cache-clusters and --cache-radius configure the token cache: add --cache")
	}
	if opt.CacheWindow < 0 || opt.CacheClusters < 0 || !(opt.CacheRadius >= 0) {
		return fmt.Errorf("--cache-window %d, --cache-clusters %d, --cache-radius %g: want values of 0 or more (0: the default)", opt.CacheWindow, opt.CacheClusters, opt.CacheRadius)
	}
	switch {
	case opt.CacheKeys < 0:
		return fmt.Errorf("--cache-keys %d: want a value of 0 or more (0: the default)", opt.CacheKeys)
	case opt.CacheKeys != 0 && !opt.Cache:
		return fmt.Errorf("--cache-keys bounds the neural cache of the token cache memory: add --cache")
	case opt.CacheKeys != 0 && !opt.CacheNeural:
		return fmt.Errorf("--cache-keys bounds the neural cache, which --cache-neural=false turns off")
	case opt.CacheMaxKeys < 0:
		return fmt.Errorf("--cache-max-keys %d: want a value of 0 or more (0: no bound over all pools)", opt.CacheMaxKeys)
	case opt.CacheMaxKeys != 0 && (!opt.Cache || !opt.CacheNeural):
		return fmt.Errorf("--cache-max-keys bounds the neural cache of the token cache memory: add --cache (and keep --cache-neural)")
	}
	opt.CacheNeural = opt.CacheNeural && opt.Cache // on by default with --cache
	return nil
}

// serveModel is the model to serve for --adapter spec: the base model for
// "none"; the embedded hyper-network for "default", or the base model with
// a note in the log when this build embeds none or it does not fit the
// model; else the adapter file, refused with an error when it does not fit.
func serveModel(s *session, spec string, o serve.AdaptOptions, log io.Writer) (serve.Model, error) {
	base := serve.Base{M: s.m}
	if spec == "none" {
		if o.Tune.Steps > 0 || o.Mode != "" {
			return nil, fmt.Errorf("--adapter none: --adapt-mode and --tune-steps need an adapter")
		}
		fmt.Fprintln(log, "chameleon: adaptation off (--adapter none)")
		return base, nil
	}
	id, err := adapt.BaseOfModel(s.m)
	if err != nil {
		return nil, err
	}
	var a *adapt.Adapter
	if spec == "default" {
		b, err := defaults.Hyper()
		if err == nil {
			a, err = adapt.Read(bytes.NewReader(b), int64(len(b)), id)
		}
		if err != nil {
			if errors.Is(err, defaults.ErrMissing) {
				fmt.Fprintln(log, "chameleon: no default hyper-network is embedded in this build: serving without adaptation (pass --adapter FILE)")
			} else {
				fmt.Fprintf(log, "chameleon: the default hyper-network does not fit this model (%v): serving without adaptation\n", err)
			}
			return base, nil
		}
		spec = "the default hyper-network"
	} else if a, err = adapt.Load(spec, id); err != nil {
		return nil, err
	}
	ad, err := serve.NewAdaptive(s.m, a, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	fmt.Fprintf(log, "chameleon: adapting with %s: %v (a request opts out with \"adapt\": false)\n", spec, ad)
	return ad, nil
}

// announceCache warns that the cache memory is on, and says how much
// host memory its neural keys can take.
func announceCache(w io.Writer, opt serve.Options, s *serve.Scheduler) {
	switch {
	case opt.CacheNeural:
		fmt.Fprintln(w, "chameleon: token and neural cache memory on (--cache): each request's output depends on earlier requests, whose prompts' tokens and hidden states it pools")
		if keys, bytes, ok := s.MemoryBound(); ok {
			fmt.Fprintf(w, "chameleon: the cache memory holds at most %d neural keys over all its pools: %.1f MiB of host memory (--cache-keys a pool, --cache-clusters, --cache-max-keys in all)\n",
				keys, float64(bytes)/(1<<20))
		}
	case opt.Cache:
		fmt.Fprintln(w, "chameleon: token cache memory on (--cache): each request's output depends on earlier requests, whose prompts' tokens it pools")
	}
}

// addCacheFlags adds the token cache memory's flags (serve.Options.Cache).
func addCacheFlags(c *cobra.Command, opt *serve.Options) {
	f := c.Flags()
	f.BoolVar(&opt.Cache, "cache", false, "token cache as a cluster memory: mix into each request's next-token distribution its own tokens and the "+
		"prompts of EARLIER requests of its cluster (weights chosen on those prompts). Off by default: with it, a request's output depends on "+
		"what other clients sent before it, and the tokens of their prompts influence it (do not enable it across clients who must not affect or "+
		"learn from one another)")
	f.IntVar(&opt.CacheWindow, "cache-window", 0, "--cache: recent prompts each memory cluster keeps (0: 64)")
	f.IntVar(&opt.CacheClusters, "cache-clusters", 0, "--cache: run-time clusters kept for inputs without a training centroid, least recently used evicted (0: 64)")
	f.Float64Var(&opt.CacheRadius, "cache-radius", 0, "--cache: squared feature distance within which such an input joins a run-time cluster (0: the adapter's gate radius)")
	f.BoolVar(&opt.CacheNeural, "cache-neural", true, "--cache: add the neural cache: each pool also keeps its prompts' final hidden states as keys, and a request mixes in the tokens that "+
		"followed contexts like its current one, in its own text and in its pool (=false: the token cache alone)")
	f.IntVar(&opt.CacheKeys, "cache-keys", 0, "--cache: neural keys (prompt positions) each memory cluster keeps, oldest prompts evicted (0: 2048); "+
		"the device holds --slots x (max(this, context) + context) keys, at most 128 MiB")
	f.IntVar(&opt.CacheMaxKeys, "cache-max-keys", 0, "--cache: neural keys the memory holds over all its clusters, least recently used clusters evicted whole "+
		"(0: no bound beyond clusters x --cache-keys; the server says the bound and its host memory at start)")
}
