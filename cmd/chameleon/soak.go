package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/serve"
)

// soakCmd is `chameleon soak`: the completions server in-process on
// loopback (with the same defences as `chameleon serve`) under a bounded
// mixed load for a while (streaming and not, adapted and not, clients that
// disconnect mid-request), sampling the process's RSS, live heap,
// goroutines and open descriptors. It fails on a lost request, a 5xx, or
// growth after the warm-up. It is a long run, not part of `make test`.
func soakCmd() *cobra.Command {
	var adapterFlag string
	mf := modelFlags{inference: true, server: true, plainHead: func() bool { return adapterFlag == "none" }}
	var dur, warm, every time.Duration
	var clients, slots, maxTokens int
	var memProfile string
	var opt serve.Options // the cache memory's flags (addCacheFlags)
	c := &cobra.Command{
		Use:   "soak [--duration 10m] [--clients 6] [--slots 4]",
		Short: "Run the server under bounded mixed load for a while and report leaks, lost requests and 5xx",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			if err := checkSoakFlags(dur, warm, every, clients, slots, maxTokens); err != nil {
				return err
			}
			if err := checkCacheFlags(&opt); err != nil {
				return err
			}
			log := cmd.ErrOrStderr()
			s, err := mf.load()
			if err != nil {
				return err
			}
			defer s.close()
			sm, err := serveModel(s, adapterFlag, serve.AdaptOptions{}, log)
			if err != nil {
				return err
			}
			if ad, ok := sm.(*serve.Adaptive); ok {
				defer ad.Close()
			}
			// The queue holds every client: a 429 would be a lost request.
			opt.Slots, opt.Queue = slots, clients
			srv, err := serve.New(sm, s.tok, opt)
			if err != nil {
				return err
			}
			defer srv.Shutdown(context.Background()) //nolint:errcheck
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			hs, cl, err := serve.NewHTTPServer(srv, ln, serve.Limits{})
			if err != nil {
				return err
			}
			go hs.Serve(cl) //nolint:errcheck // closed below
			defer hs.Close()
			announceCache(log, opt, srv.Scheduler())
			r := &soak{url: "http://" + ln.Addr().String(), adapts: sm.Adapts(), maxTokens: maxTokens}
			fmt.Fprintf(log, "soak: %s on %s, %d clients, %d slots, %v (warm-up %v), adaptation %v\n",
				s.label, r.url, clients, slots, dur, warm, r.adapts)
			r.memProfile = memProfile
			rep := r.run(dur, warm, every, clients, func(sm soakSample) {
				fmt.Fprintf(log, "soak: %7s  rss %6.1f MiB  heap %6.1f MiB  goroutines %4d  fds %3d  requests %6d\n",
					sm.At.Round(time.Second), sm.RSS, sm.Heap, sm.Goroutines, sm.FDs, sm.Requests)
			})
			rep.Codes = metricCodes(r.url)
			b, _ := json.MarshalIndent(rep, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			if len(rep.Problems) > 0 {
				return fmt.Errorf("soak: %s", strings.Join(rep.Problems, "; "))
			}
			return nil
		},
	}
	mf.add(c)
	f := c.Flags()
	f.StringVar(&adapterFlag, "adapter", "default", "adapter as for 'serve' (default: the embedded hyper-network)")
	f.DurationVar(&dur, "duration", 10*time.Minute, "how long to run the load")
	f.DurationVar(&warm, "warmup", 2*time.Minute, "samples before this are not compared for growth")
	f.DurationVar(&every, "sample", 15*time.Second, "sampling interval")
	f.IntVar(&clients, "clients", 6, "concurrent clients (the queue holds them all)")
	f.IntVar(&slots, "slots", 4, "server slots")
	f.IntVar(&maxTokens, "max-tokens", 24, "largest max_tokens of a request")
	addCacheFlags(c, &opt)
	f.StringVar(&memProfile, "memprofile", "", "write Go heap profiles to FILE.warm (at the end of the warm-up) and FILE (at the end), to compare with go tool pprof -base")
	return c
}

// soak is one soak run's load.
type soak struct {
	url        string
	adapts     bool
	maxTokens  int
	memProfile string

	sent, ok, cancelled, lost, s5xx, other atomic.Int64
	mu                                     sync.Mutex
	errs                                   []string // the first few problems
}

// soakSample is one sample of the process.
type soakSample struct {
	At         time.Duration `json:"at_ns"`
	RSS        float64       `json:"rss_mib"`
	Heap       float64       `json:"heap_mib"` // live heap after a GC
	Goroutines int           `json:"goroutines"`
	FDs        int           `json:"fds"`
	Requests   int64         `json:"requests"`
}

// soakReport is the result.
type soakReport struct {
	Seconds   float64          `json:"seconds"`
	Requests  int64            `json:"requests"`
	OK        int64            `json:"ok"`
	Cancelled int64            `json:"cancelled_by_client"`
	Lost      int64            `json:"lost"`
	Status5xx int64            `json:"status_5xx"`
	Other     int64            `json:"other_status"`
	Samples   []soakSample     `json:"samples"`
	Idle      soakSample       `json:"idle_after"` // once the load stopped and the server is idle
	Codes     map[string]int64 `json:"requests_total"`
	Errors    []string         `json:"errors,omitempty"`
	Problems  []string         `json:"problems,omitempty"`
}

var soakPrompts = []string{
	"The history of the", "func main() {", "In the beginning", "Dear customer, we", "A wise man once said",
	"To install the package, run", "def fibonacci(n):", "She opened the letter slowly",
}

func (r *soak) run(dur, warm, every time.Duration, clients int, progress func(soakSample)) soakReport {
	t0 := time.Now()
	ctx, stop := context.WithTimeout(context.Background(), dur)
	defer stop()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; ctx.Err() == nil; i += clients {
				r.one(ctx, i)
			}
		}()
	}
	var rep soakReport
	tick := time.NewTicker(every)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			sm := r.sample(time.Since(t0))
			if len(rep.Samples) > 0 && rep.Samples[len(rep.Samples)-1].At < warm && sm.At >= warm {
				r.writeHeap(".warm")
			}
			rep.Samples = append(rep.Samples, sm)
			progress(sm)
		}
	}
	tick.Stop()
	wg.Wait()
	// Let the server settle: handlers return, idle connections close.
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(2 * time.Second)
	rep.Idle = r.sample(time.Since(t0))
	r.writeHeap("")
	rep.Seconds = time.Since(t0).Seconds()
	rep.Requests, rep.OK, rep.Cancelled = r.sent.Load(), r.ok.Load(), r.cancelled.Load()
	rep.Lost, rep.Status5xx, rep.Other = r.lost.Load(), r.s5xx.Load(), r.other.Load()
	rep.Errors = r.errs
	if rep.Lost > 0 || rep.Status5xx > 0 || rep.Other > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d lost, %d 5xx, %d other statuses", rep.Lost, rep.Status5xx, rep.Other))
	}
	// Growth: the first and the last third of the samples after the warm-up.
	var after []soakSample
	for _, sm := range rep.Samples {
		if sm.At >= warm {
			after = append(after, sm)
		}
	}
	if n := len(after) / 3; n >= 1 {
		first, last := meanSample(after[:n]), meanSample(after[len(after)-n:])
		grow := func(what string, a, b, slack float64) {
			if b > a*1.10+slack {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s grew from %.1f to %.1f after the warm-up", what, a, b))
			}
		}
		grow("RSS (MiB)", first.RSS, last.RSS, 8)
		grow("live heap (MiB)", first.Heap, last.Heap, 2)
		grow("goroutines", float64(first.Goroutines), float64(last.Goroutines), 8)
		grow("descriptors", float64(first.FDs), float64(last.FDs), 8)
	}
	return rep
}

func meanSample(ss []soakSample) soakSample {
	var m soakSample
	for _, s := range ss {
		m.RSS += s.RSS / float64(len(ss))
		m.Heap += s.Heap / float64(len(ss))
		m.Goroutines += s.Goroutines
		m.FDs += s.FDs
	}
	m.Goroutines /= len(ss)
	m.FDs /= len(ss)
	return m
}

// one sends request i of the mix: streaming every other one, adapted on
// every other pair (when the model adapts), n = 2 every seventh, and every
// fifth abandoned by its client (after the first event, or after 100 ms).
func (r *soak) one(ctx context.Context, i int) {
	body := map[string]any{
		"prompt": soakPrompts[i%len(soakPrompts)], "max_tokens": 4 + i%max(1, r.maxTokens-3),
		"temperature": 0.8, "seed": i, "stream": i%2 == 0,
	}
	if r.adapts {
		body["adapt"] = (i/2)%2 == 0
	}
	if i%7 == 3 {
		body["n"] = 2
	}
	abandon := i%5 == 4
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx)) // the run's end does not cut a request short
	defer cancel()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(rctx, http.MethodPost, r.url+"/v1/completions", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	r.sent.Add(1)
	if abandon && i%2 != 0 {
		time.AfterFunc(100*time.Millisecond, cancel)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if abandon && rctx.Err() != nil {
			r.cancelled.Add(1)
			return
		}
		r.fail(&r.lost, "request %d: %v", i, err)
		return
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		raw, _ := io.ReadAll(resp.Body)
		r.fail(&r.s5xx, "request %d: %d %s", i, resp.StatusCode, raw)
		return
	case resp.StatusCode != 200:
		raw, _ := io.ReadAll(resp.Body)
		r.fail(&r.other, "request %d: %d %s", i, resp.StatusCode, raw)
		return
	}
	if body["stream"] == true {
		sc := bufio.NewScanner(resp.Body)
		done := false
		for sc.Scan() {
			line := sc.Text()
			if abandon && strings.HasPrefix(line, "data: ") {
				cancel()
				r.cancelled.Add(1)
				return
			}
			if strings.HasPrefix(line, `data: {"error"`) {
				r.fail(&r.s5xx, "request %d: %s", i, line)
				return
			}
			done = done || line == "data: [DONE]"
		}
		if !done {
			r.fail(&r.lost, "request %d: the stream ended without [DONE] (%v)", i, sc.Err())
			return
		}
	} else {
		var cr struct {
			Choices []struct {
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		raw, err := io.ReadAll(resp.Body)
		if err != nil && abandon && rctx.Err() != nil {
			r.cancelled.Add(1)
			return
		}
		if err != nil || json.Unmarshal(raw, &cr) != nil || len(cr.Choices) == 0 || cr.Choices[0].FinishReason == nil {
			r.fail(&r.lost, "request %d: incomplete answer %q (%v)", i, raw, err)
			return
		}
	}
	r.ok.Add(1)
}

func (r *soak) fail(n *atomic.Int64, format string, args ...any) {
	n.Add(1)
	r.mu.Lock()
	if len(r.errs) < 10 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
	r.mu.Unlock()
}

// writeHeap writes a heap profile to the --memprofile path + suffix.
func (r *soak) writeHeap(suffix string) {
	if r.memProfile == "" {
		return
	}
	f, err := os.Create(r.memProfile + suffix)
	if err != nil {
		r.fail(&r.other, "heap profile: %v", err)
		return
	}
	defer f.Close()
	runtime.GC()
	pprof.WriteHeapProfile(f) //nolint:errcheck // a diagnostic
}

// sample measures this process (the server runs in it).
func (r *soak) sample(at time.Duration) soakSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sm := soakSample{At: at, Heap: float64(ms.HeapAlloc) / (1 << 20), Goroutines: runtime.NumGoroutine(), Requests: r.sent.Load()}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				sm.RSS = kb / 1024
			}
		}
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		sm.FDs = len(ents)
	}
	return sm
}

// metricCodes reads chameleon_requests_total by code from /metrics.
func metricCodes(url string) map[string]int64 {
	out := map[string]int64{}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if rest, ok := strings.CutPrefix(l, `chameleon_requests_total{code="`); ok {
			code, val, _ := strings.Cut(rest, `"} `)
			n, _ := strconv.ParseFloat(val, 64)
			out[code] = int64(n)
		}
	}
	return out
}

// checkSoakFlags names the first of soak's flags out of range, with its
// value.
func checkSoakFlags(dur, warm, every time.Duration, clients, slots, maxTokens int) error {
	switch {
	case warm < 0:
		return fmt.Errorf("--warmup %v: want 0 or more", warm)
	case dur <= warm:
		return fmt.Errorf("--duration %v: want more than --warmup %v", dur, warm)
	case every <= 0:
		return fmt.Errorf("--sample %v: want more than 0", every)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"--clients", clients}, {"--slots", slots}, {"--max-tokens", maxTokens}} {
		if err := positive(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}
