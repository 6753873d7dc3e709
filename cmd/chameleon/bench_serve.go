package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
	"github.com/chameleon-llm/chameleon/serve"
)

// serveBench is one concurrency level of `chameleon bench --serve`.
type serveBench struct {
	// Config is the server: "base", or with --adapter "adapted, grouped
	// apart" (each admission's prompts get a base pass of their own for
	// their clusters) or "adapted, in the prefill" (the prefill assigns
	// them).
	Config      string  `json:"config,omitempty"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Seconds     float64 `json:"seconds"`
	RequestsS   float64 `json:"requests_per_s"`
	TokensS     float64 `json:"tokens_per_s"` // completion tokens per second
	Failed      int     `json:"failed"`
	Adapted     int     `json:"adapted,omitempty"` // choices the adapter adapted
	Reps        int     `json:"reps"`              // rounds; this is the one of median time
}

// runServe is --serve: the completions server on loopback at each
// concurrency level of --batches, with f16 weights (f32 when --dtype is
// f32 alone). With --adapter it serves the adapter too, its online
// assignment grouped apart and in the prefill in turn, level by level,
// with prompts from --adapter-windows (cut to --seq) where given.
func (b *bench) runServe() error {
	b.log("serve bench on %s: %s (%d parameters), %d greedy tokens per request, 3 requests per client\n", b.d, b.name, b.cfg.Params(), b.o.decode)
	if _, err := b.measureCeilings(); err != nil {
		return err
	}
	dt := gpu.F16
	if len(b.dts) == 1 && b.dts[0] == gpu.F32 {
		dt = gpu.F32
	}
	m, err := b.upload(dt)
	if err != nil {
		return err
	}
	tok, err := tokenizer.NewGPT2()
	if err != nil {
		return err
	}
	slots := slices.Max(b.bs)
	sv := []servedBy{{"base", serve.Base{M: m}, serve.Options{}}}
	prompts := []any{"The history of the", "func main() {", "In the beginning", "Dear customer, we", "A wise man once said"}
	if b.o.adaptMode() {
		if sv, prompts, err = b.adaptedServers(m); err != nil {
			return err
		}
		defer sv[2].m.(*serve.Adaptive).Close()
	}
	label := fmt.Sprintf("%s\nmodel: GPT-2 architecture, %d layers, width %d, vocabulary %d (%.1f M parameters), %d slots, %s",
		m.B.Name(), b.cfg.NLayer, b.cfg.NEmbd, b.cfg.VocabSize, float64(b.cfg.Params())/1e6, slots, time.Now().Format("2006-01-02"))
	// Each server answers one request first (shader compilation, pools),
	// untimed; then the configurations take turns, --reps rounds of each
	// level, and the round of median time is reported.
	for _, x := range sv {
		if _, err := benchServe(x, tok, slots, 1, 1, 1, prompts); err != nil {
			return err
		}
	}
	var rs []serveBench
	for _, c := range b.bs {
		runs := make([][]serveBench, len(sv))
		for range b.o.reps {
			for i, x := range sv {
				r, err := benchServe(x, tok, slots, c, 3, b.o.decode, prompts)
				if err != nil {
					return err
				}
				runs[i] = append(runs[i], r)
			}
		}
		for _, rr := range runs {
			slices.SortFunc(rr, func(a, b serveBench) int { return cmp.Compare(a.Seconds, b.Seconds) })
			r := rr[len(rr)/2]
			r.Reps = len(rr)
			rs = append(rs, r)
			b.log("serve %s, concurrency %2d: %d requests in %.1fs: %.2f requests/s, %.1f tokens/s (%d failed, %d adapted; median of %d)\n",
				r.Config, c, r.Requests, r.Seconds, r.RequestsS, r.TokensS, r.Failed, r.Adapted, r.Reps)
		}
	}
	b.report.Serve = rs
	if b.o.plotPath != "" {
		if err := plotServe(rs, b.o.plotPath, label); err != nil {
			return err
		}
		b.log("plot: %s\n", b.o.plotPath)
	}
	return nil
}

// servedBy is one server configuration of the serve bench.
type servedBy struct {
	name string
	m    serve.Model
	opt  serve.Options
}

// adaptedServers is --serve --adapter: the base model, the adapter served
// online (one Adaptive) with its prompts' clusters grouped apart and in
// the prefill, and the prompts (token ids) the clients send.
func (b *bench) adaptedServers(m *model.Model) ([]servedBy, []any, error) {
	var a *adapt.Adapter
	var err error
	if b.o.adapterSpec == "random" {
		a, err = adaptrun.RandomHyper(b.cfg, b.host, b.o.adapterRank, b.o.adapterSites, 1)
	} else {
		a, err = loadAdapter(b.o.adapterSpec, m)
	}
	if err != nil {
		return nil, nil, err
	}
	ad, err := serve.NewAdaptive(m, a, serve.AdaptOptions{})
	if err != nil {
		return nil, nil, err
	}
	b.log("adapter: %s (%s)\n", describeAdapter(a.Meta), ad)
	texts, err := overheadTexts(b.o.adapterWindows, b.o.seq)
	if err != nil {
		ad.Close()
		return nil, nil, err
	}
	var prompts []any
	for _, t := range texts {
		prompts = append(prompts, t[:min(len(t), b.o.seq)])
	}
	if len(prompts) == 0 {
		prompts = []any{"The history of the", "func main() {", "In the beginning", "Dear customer, we", "A wise man once said"}
	}
	return []servedBy{{"base", serve.Base{M: m}, serve.Options{}}, {"adapted, grouped apart", ad, serve.Options{GroupApart: true}},
		{"adapted, in the prefill", ad, serve.Options{}}}, prompts, nil
}

// benchServe runs server x in-process on loopback with slots slots and has
// c clients send perClient greedy requests each (prompts in turn, adapted
// where x adapts), measuring requests/s and generated tokens/s.
func benchServe(x servedBy, tok *tokenizer.Tokenizer, slots, c, perClient, maxTokens int, prompts []any) (serveBench, error) {
	r := serveBench{Config: x.name, Concurrency: c, Requests: c * perClient}
	opt := x.opt
	opt.Slots, opt.Queue = slots, 4*slots
	srv, err := serve.New(x.m, tok, opt)
	if err != nil {
		return r, err
	}
	defer srv.Shutdown(context.Background()) //nolint:errcheck // bench teardown
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // closed below
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/v1/completions"
	var mu sync.Mutex
	tokens := 0
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < perClient; j++ {
				n, adapted, err := postBench(url, prompts[(i*perClient+j)%len(prompts)], maxTokens, x.m.Adapts())
				mu.Lock()
				if err != nil {
					r.Failed++
				}
				tokens += n
				if adapted {
					r.Adapted++
				}
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	r.Seconds = time.Since(t0).Seconds()
	r.RequestsS = float64(r.Requests) / r.Seconds
	r.TokensS = float64(tokens) / r.Seconds
	return r, nil
}

// postBench sends one greedy completion request (adapted if adapt) and
// returns its completion tokens and whether its choice was adapted.
func postBench(url string, prompt any, maxTokens int, adapt bool) (int, bool, error) {
	req := map[string]any{"prompt": prompt, "max_tokens": maxTokens, "temperature": 0}
	if adapt {
		req["adapt"] = true
	}
	body, _ := json.Marshal(req)
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var cr struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
		Choices []serve.Choice `json:"choices"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &cr) != nil {
		return 0, false, fmt.Errorf("status %d", resp.StatusCode)
	}
	adapted := len(cr.Choices) > 0 && cr.Choices[0].Chameleon != nil && cr.Choices[0].Chameleon.Adapted
	return cr.Usage.CompletionTokens, adapted, nil
}

// plotServe plots tokens/s against concurrency, the title naming the
// device and the model (label) the figures hold for.
func plotServe(rs []serveBench, path, label string) error {
	p := plot.New()
	p.Title.Text = "chameleon serve: throughput against concurrency\n" + label
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "concurrent clients"
	p.Y.Label.Text = "generated tokens / s"
	var names []string
	by := map[string]plotter.XYs{}
	for _, r := range rs {
		name := r.Config
		if name == "" {
			name = "base"
		}
		if _, ok := by[name]; !ok {
			names = append(names, name)
		}
		by[name] = append(by[name], plotter.XY{X: float64(r.Concurrency), Y: r.TokensS})
	}
	for i, name := range names {
		line, points, err := plotter.NewLinePoints(by[name])
		if err != nil {
			return err
		}
		line.Color, points.Color = plotutil.Color(i), plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		if len(names) > 1 {
			p.Legend.Add(name, line, points)
		}
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}
