package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
	"github.com/chameleon-llm/chameleon/serve"
)

// serveBench is one concurrency level of `chameleon bench --serve`.
type serveBench struct {
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Seconds     float64 `json:"seconds"`
	RequestsS   float64 `json:"requests_per_s"`
	TokensS     float64 `json:"tokens_per_s"` // completion tokens per second
	Failed      int     `json:"failed"`
}

// runServe is --serve: the completions server on loopback at each
// concurrency level of --batches, with f16 weights (f32 when --dtype is
// f32 alone).
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
	rs, err := benchServe(m, tok, b.bs, 3, b.o.decode, b.o.plotPath, b.log)
	b.report.Serve = rs
	return err
}

// benchServe runs the completions server in-process on loopback and, for
// each concurrency level, has that many clients send perClient greedy
// requests each, measuring requests/s and generated tokens/s.
func benchServe(m *model.Model, tok *tokenizer.Tokenizer, levels []int, perClient, maxTokens int, plotPath string, log func(string, ...any)) ([]serveBench, error) {
	slots := 1
	for _, c := range levels {
		slots = max(slots, c)
	}
	srv, err := serve.New(serve.Base{M: m}, tok, serve.Options{Slots: slots, Queue: 4 * slots})
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown(context.Background()) //nolint:errcheck // bench teardown
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // closed below
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/v1/completions"
	prompts := []string{"The history of the", "func main() {", "In the beginning", "Dear customer, we", "A wise man once said"}
	var out []serveBench
	for _, c := range levels {
		var mu sync.Mutex
		r := serveBench{Concurrency: c, Requests: c * perClient}
		tokens := 0
		var wg sync.WaitGroup
		t0 := time.Now()
		for i := 0; i < c; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				for j := 0; j < perClient; j++ {
					body, _ := json.Marshal(map[string]any{"prompt": prompts[(i+j)%len(prompts)], "max_tokens": maxTokens, "temperature": 0})
					resp, err := http.Post(url, "application/json", bytes.NewReader(body))
					n := 0
					if err == nil {
						var cr struct {
							Usage struct {
								CompletionTokens int `json:"completion_tokens"`
							} `json:"usage"`
						}
						raw, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &cr) != nil {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
						n = cr.Usage.CompletionTokens
					}
					mu.Lock()
					if err != nil {
						r.Failed++
					}
					tokens += n
					mu.Unlock()
				}
			}(i)
		}
		wg.Wait()
		r.Seconds = time.Since(t0).Seconds()
		r.RequestsS = float64(r.Requests) / r.Seconds
		r.TokensS = float64(tokens) / r.Seconds
		out = append(out, r)
		log("serve concurrency %2d: %d requests in %.1fs: %.2f requests/s, %.1f tokens/s (%d failed)\n",
			c, r.Requests, r.Seconds, r.RequestsS, r.TokensS, r.Failed)
	}
	if plotPath != "" {
		c := m.Cfg
		label := fmt.Sprintf("%s\nmodel: GPT-2 architecture, %d layers, width %d, vocabulary %d (%.1f M parameters), %d slots, %s",
			m.B.Name(), c.NLayer, c.NEmbd, c.VocabSize, float64(c.Params())/1e6, slots, time.Now().Format("2006-01-02"))
		if err := plotServe(out, plotPath, label); err != nil {
			return out, err
		}
		log("plot: %s\n", plotPath)
	}
	return out, nil
}

// plotServe plots tokens/s against concurrency, the title naming the
// device and the model (label) the figures hold for.
func plotServe(rs []serveBench, path, label string) error {
	p := plot.New()
	p.Title.Text = "chameleon serve: throughput against concurrency\n" + label
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "concurrent clients"
	p.Y.Label.Text = "generated tokens / s"
	pts := make(plotter.XYs, len(rs))
	for i, r := range rs {
		pts[i] = plotter.XY{X: float64(r.Concurrency), Y: r.TokensS}
	}
	line, points, err := plotter.NewLinePoints(pts)
	if err != nil {
		return err
	}
	p.Add(line, points, plotter.NewGrid())
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}
