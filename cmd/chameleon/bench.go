package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/train"
)

// benchReport is what `chameleon bench --json` prints.
type benchReport struct {
	Adapter  string         `json:"adapter"`
	Model    string         `json:"model"`
	Params   int            `json:"params"`
	Ceilings *gpu.Ceilings  `json:"ceilings,omitempty"`
	Runs     []benchRun     `json:"runs,omitempty"`
	Train    []trainBench   `json:"train,omitempty"`
	Serve    []serveBench   `json:"serve,omitempty"`
	Adapt    []adaptBench   `json:"adapt,omitempty"`
	Quality  []qualityBench `json:"quality,omitempty"`
}

// trainBench is one training-step measurement (forward, backward, AdamW).
type trainBench struct {
	Batch        int     `json:"batch"`
	Seq          int     `json:"seq"`
	TokensPerSec float64 `json:"tokens_per_s"`
	GFLOPs       float64 `json:"gflops"` // 3x the forward's matmul and attention FLOPs per second
	OfMatMulPeak float64 `json:"fraction_of_matmul_ceiling"`
}

type benchRun struct {
	DType string `json:"dtype"`
	// The run with the median decode rate of Reps timed runs; every run's
	// rates are listed beside it (a shared or CPU adapter drifts between
	// runs: the spread says how far).
	model.BenchResult
	Reps            int           `json:"reps"`
	PrefillTokSRuns []float64     `json:"prefill_tokens_per_s_runs"`
	DecodeTokSRuns  []float64     `json:"decode_tokens_per_s_runs"`
	Kernels         []kernelShare `json:"kernels,omitempty"`
	// Matmul kernels over the whole run (prefill and decode).
	MatMulGFLOPs      float64 `json:"matmul_gflops"`
	MatMulOfCeiling   float64 `json:"matmul_fraction_of_ceiling"`
	DecodeWeightGBs   float64 `json:"decode_weight_gbs"`
	DecodeOfBandwidth float64 `json:"decode_fraction_of_copy_bandwidth"`
}

type kernelShare struct {
	Kernel string  `json:"kernel"`
	Calls  int     `json:"calls"`
	Ms     float64 `json:"ms"`
	Share  float64 `json:"share"` // of all GPU time in the run
	// Work rates and their fraction of the measured ceilings: FLOPs are
	// declared by the matmul op; bytes are the buffer ranges bound to the
	// kernel's dispatches (see gpu.KernelTime).
	GFLOPs        float64 `json:"gflops,omitempty"`
	OfMatMulPeak  float64 `json:"fraction_of_matmul_ceiling,omitempty"`
	GBs           float64 `json:"gbs"`
	OfCopyCeiling float64 `json:"fraction_of_copy_ceiling"`
}

func benchCmd() *cobra.Command {
	var cfgName, modelPath, dtypes, batches string
	var prompt, decode, seq int
	var asJSON, trainMode, serveMode, qualityMode bool
	var plotPath string
	var adapterSpec, adapterSites string
	var adapterRank, clusters, reps int
	c := &cobra.Command{
		Use:   "bench",
		Short: "Prefill and decode tokens/s at several batch sizes, per-kernel GPU time, and the share of the device's measured ceilings",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			adaptMode := adapterSpec != "" && adapterSpec != "none"
			if adaptMode && (trainMode || serveMode) {
				return fmt.Errorf("--adapter measures the adaptation's overhead on its own: drop --train and --serve")
			}
			useDefault := adaptMode && adapterSpec == "default" && modelPath == "" // the default hyper-network on the default model
			if adaptMode {
				// The target shape unless asked otherwise.
				if !cmd.Flags().Changed("batches") {
					batches = "32"
				}
				if !cmd.Flags().Changed("seq") {
					seq = 256
				}
				if !cmd.Flags().Changed("dtype") {
					dtypes = "f16"
				}
			}
			if reps < 1 {
				return fmt.Errorf("--reps %d: want at least 1", reps)
			}
			d, err := gpu.Open(gpu.Options{Adapter: deviceFlag})
			if err != nil {
				return err
			}
			defer d.Close()
			w := gpu.NewWebGPU(d)
			var cfg model.Config
			var host []model.HostTensor
			name := cfgName
			if useDefault {
				fsys, err := defaults.Model()
				if err != nil {
					return err
				}
				if cfg, host, err = model.LoadHFFS(fsys); err != nil {
					return err
				}
				name = "the default model"
			} else if modelPath != "" {
				if cfg, host, err = model.Load(modelPath); err != nil {
					return err
				}
				name = modelPath
			} else {
				var ok bool
				if cfg, ok = model.Configs[cfgName]; !ok {
					return fmt.Errorf("--config %q unknown", cfgName)
				}
				host = model.RandomInit(cfg, 1)
			}
			var bs []int
			for _, f := range strings.Split(batches, ",") {
				b, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || b <= 0 {
					return fmt.Errorf("--batches %q: want positive integers separated by commas", batches)
				}
				bs = append(bs, b)
			}
			rep := benchReport{Adapter: d.String(), Model: name, Params: cfg.Params()}
			log := func(format string, a ...any) {
				if !asJSON {
					fmt.Printf(format, a...)
				}
			}
			if adaptMode {
				log("adaptation overhead on %s: %s (%d parameters), %s, %d tokens per sequence, median of %d\n", d, name, cfg.Params(), adapterSpec, seq, reps)
				for _, ds := range strings.Split(dtypes, ",") {
					dt := gpu.F32
					switch strings.TrimSpace(ds) {
					case "f32":
					case "f16":
						dt = gpu.F16
					default:
						return fmt.Errorf("--dtype %q: want f32, f16 or both", ds)
					}
					wts, err := model.Upload(w, cfg, host, dt)
					if err != nil {
						return err
					}
					m := &model.Model{Cfg: cfg, W: wts, B: w}
					var a *adapt.Adapter
					if adapterSpec == "random" {
						a, err = randomHyper(cfg, host, adapterRank, adapterSites, 1)
					} else {
						a, err = loadAdapter(adapterSpec, m)
					}
					if err != nil {
						return err
					}
					if a.Meta.Kind != adapt.KindHyper {
						return fmt.Errorf("--adapter %s is a %s adapter: the overhead bench times the hyper-network's whole path", adapterSpec, a.Meta.Kind)
					}
					log("adapter: %s\n", describeAdapter(a.Meta))
					for _, b := range bs {
						r, err := benchAdapt(m, a, adapterSpec, b, seq, clusters, reps)
						if err != nil {
							return err
						}
						rep.Adapt = append(rep.Adapt, r)
						verdict := "meets"
						if !r.MeetsTarget {
							verdict = "misses"
						}
						log("%s batch %d x %d, %d clusters: forward %.3fs, adapted %.3fs (plan %.3fs: features, k-means, hyper-network; low-rank head %+.3fs): overhead %+.1f%% (%s the %.0f%% target)\n",
							r.DType, b, seq, r.Clusters, r.BaseSeconds, r.AdaptedSeconds, r.PlanSeconds, r.HeadSeconds, 100*r.Overhead, verdict, 100*r.Target)
					}
					freeWeights(w, wts)
				}
				if asJSON {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(rep)
				}
				return nil
			}
			if qualityMode {
				log("quantization quality on %s: %s (%d parameters), %d sequences of %d greedy tokens\n", d, name, cfg.Params(), bs[0], decode)
				q, err := benchQuality(w, cfg, model.Dequantize(host), strings.Split(dtypes, ","), bs[0], decode, log)
				rep.Quality = q
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(rep)
				}
				return nil
			}
			if trainMode {
				log("training bench on %s: %s (%d parameters)\n", d, name, cfg.Params())
			} else if serveMode {
				log("serve bench on %s: %s (%d parameters), %d greedy tokens per request, 3 requests per client\n", d, name, cfg.Params(), decode)
			} else {
				log("bench on %s: %s (%d parameters), prompt %d, decode %d\n", d, name, cfg.Params(), prompt, decode)
			}
			ceil, err := w.MeasureCeilings(3)
			if err != nil {
				return err
			}
			rep.Ceilings = &ceil
			log("ceilings: matmul %.2f GFLOP/s (256x768x3072 f32), copy %.2f GB/s (64 MiB)\n", ceil.MatMulGFLOPs, ceil.CopyGBs)
			if d.Info.Type == "cpu" {
				// Seen on lavapipe: the timestamps around the texture matmuls imply
				// several times the FLOP rate their wall-clock benchmark measures.
				log("note: this CPU adapter's GPU timestamps do not bracket the kernels reliably: the per-kernel table and\n" +
					"      the matmul GFLOP/s derived from it are indicative only; tok/s are wall-clock\n")
			}
			if serveMode {
				dt := gpu.F16
				if strings.TrimSpace(dtypes) == "f32" {
					dt = gpu.F32
				}
				wts, err := model.Upload(w, cfg, host, dt)
				if err != nil {
					return err
				}
				tok, err := model.NewGPT2Tokenizer()
				if err != nil {
					return err
				}
				rs, err := benchServe(&model.Model{Cfg: cfg, W: wts, B: w}, tok, bs, 3, decode, plotPath, log)
				rep.Serve = rs
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(rep)
				}
				return nil
			}
			if trainMode {
				for _, b := range bs {
					tps, flops, err := train.BenchStep(w, cfg, b, seq)
					if err != nil {
						return err
					}
					tr := trainBench{Batch: b, Seq: seq, TokensPerSec: tps, GFLOPs: flops / 1e9, OfMatMulPeak: flops / 1e9 / ceil.MatMulGFLOPs}
					rep.Train = append(rep.Train, tr)
					log("train batch %d x %d tokens: %.1f tokens/s, %.2f GFLOP/s achieved (%.0f%% of the matmul ceiling)\n",
						b, seq, tps, tr.GFLOPs, 100*tr.OfMatMulPeak)
				}
				if asJSON {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(rep)
				}
				return nil
			}
			for _, ds := range strings.Split(dtypes, ",") {
				dt, err := benchDType(ds)
				if err != nil {
					return err
				}
				wb := dt.Size() // quantized: bytes figures corrected below
				if dt.Quantized() {
					wb = 2
				}
				wts, err := model.Upload(w, cfg, host, dt)
				if err != nil {
					return err
				}
				m := &model.Model{Cfg: cfg, W: wts, B: w}
				for _, b := range bs {
					// Timed without the profiler (its timestamps split the
					// dispatches into passes of their own), then once more
					// with it for the per-kernel table.
					// (--cpuprofile samples carry a "bench" label: timed or
					// profiled.)
					var runs []model.BenchResult
					var err error
					for i := 0; i < reps && err == nil; i++ {
						pprof.Do(context.Background(), pprof.Labels("bench", "timed"), func(ctx context.Context) {
							var r model.BenchResult
							r, err = m.Bench(ctx, b, prompt, decode, 1, wb)
							runs = append(runs, r)
						})
					}
					if err != nil {
						return err
					}
					r, pre, dec := medianBench(runs)
					if err := w.StartProfile(); err != nil {
						return err
					}
					pprof.Do(context.Background(), pprof.Labels("bench", "profiled"), func(ctx context.Context) {
						_, err = m.Bench(ctx, b, prompt, decode, 1, wb)
					})
					prof, perr := w.StopProfile()
					if err != nil {
						return err
					}
					if perr != nil {
						return perr
					}
					run := benchRun{DType: dt.String(), BenchResult: r, Reps: reps, PrefillTokSRuns: pre, DecodeTokSRuns: dec}
					var total, mm float64
					for _, k := range prof {
						total += k.Total.Seconds()
						if strings.HasPrefix(k.Kernel, "matmul") {
							mm += k.Total.Seconds()
						}
					}
					for _, k := range prof {
						ks := kernelShare{Kernel: k.Kernel, Calls: k.Calls, Ms: k.Total.Seconds() * 1000, Share: k.Total.Seconds() / total}
						if sec := k.Total.Seconds(); sec > 0 {
							ks.GFLOPs = k.Flops / sec / 1e9
							ks.OfMatMulPeak = ks.GFLOPs / ceil.MatMulGFLOPs
							ks.GBs = k.Bytes / sec / 1e9
							ks.OfCopyCeiling = ks.GBs / ceil.CopyGBs
						}
						run.Kernels = append(run.Kernels, ks)
					}
					pf, _ := cfg.MatMulWork(b*prompt, b, wb)
					df, _ := cfg.MatMulWork(b, b, wb)
					dbytes := decodeWeightBytes(cfg, dt)
					run.DecodeWeightBytes = dbytes
					run.MatMulGFLOPs = (pf + df*float64(decode)) / mm / 1e9
					run.MatMulOfCeiling = run.MatMulGFLOPs / ceil.MatMulGFLOPs
					run.DecodeWeightGBs = dbytes * float64(decode) / r.DecodeSeconds / 1e9
					run.DecodeOfBandwidth = run.DecodeWeightGBs / ceil.CopyGBs
					rep.Runs = append(rep.Runs, run)
					log("%s batch %2d: prefill %8.1f tok/s, decode %7.2f tok/s; matmul kernels %.2f GFLOP/s (%.0f%% of ceiling); decode streams weights at %.2f GB/s (%.0f%% of copy)\n",
						dt, b, r.PrefillTokS, r.DecodeTokS, run.MatMulGFLOPs, 100*run.MatMulOfCeiling, run.DecodeWeightGBs, 100*run.DecodeOfBandwidth)
					log("    recorded: decode step %d dispatches (%.1f a token), %d passes, %d submits; prefill %d dispatches (%.2f a token), %d passes\n",
						r.DecodeStep.Dispatches, r.DecodeDispatchesPerToken, r.DecodeStep.Passes, r.DecodeStep.Submits, r.Prefill.Dispatches, r.PrefillDispatchesPerToken, r.Prefill.Passes)
					if reps > 1 {
						log("    median of %d runs by decode rate; over the runs: prefill %.1f-%.1f, decode %.2f-%.2f tok/s\n",
							reps, slices.Min(pre), slices.Max(pre), slices.Min(dec), slices.Max(dec))
					}
					log("    %-24s %6s %10s %6s %9s %9s %8s %8s\n", "kernel", "calls", "ms", "time", "GFLOP/s", "of peak", "GB/s", "of copy")
					for i, k := range run.Kernels {
						if i < 10 {
							fl, pk := "", ""
							if k.GFLOPs > 0 {
								fl, pk = fmt.Sprintf("%.2f", k.GFLOPs), fmt.Sprintf("%.0f%%", 100*k.OfMatMulPeak)
							}
							log("    %-24s %6d %10.1f %5.1f%% %9s %9s %8.2f %7.0f%%\n", k.Kernel, k.Calls, k.Ms, 100*k.Share, fl, pk, k.GBs, 100*k.OfCopyCeiling)
						}
					}
				}
				freeWeights(w, wts)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return nil
		},
	}
	c.Flags().StringVar(&cfgName, "config", "gpt2", "architecture with random weights when no --model is given")
	c.Flags().StringVar(&modelPath, "model", "", "benchmark this checkpoint instead")
	c.Flags().StringVar(&dtypes, "dtype", "f32,f16", "weight dtypes to run, comma-separated: f32, f16, q8_0, q4_0, q4_k (quantized: the layer matrices, embeddings f16)")
	c.Flags().StringVar(&batches, "batches", "1,8,32", "batch sizes, comma-separated")
	c.Flags().IntVar(&prompt, "prompt", 32, "prompt tokens per sequence")
	c.Flags().IntVar(&decode, "decode", 8, "decode steps")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&qualityMode, "quality", false, "measure what quantization costs instead: perplexity under each --dtype of the f16 model's own greedy continuations (--decode tokens) of random prompts (as many as the first --batches)")
	c.Flags().BoolVar(&trainMode, "train", false, "measure training steps instead (use with e.g. --config tiny --batches 8 --seq 64)")
	c.Flags().IntVar(&seq, "seq", 64, "tokens per sequence for --train (and --adapter, default 256 there)")
	c.Flags().BoolVar(&serveMode, "serve", false, "measure the completions server on loopback: requests/s and tokens/s against concurrency (--batches are the concurrency levels, --decode the tokens per request)")
	c.Flags().StringVar(&plotPath, "plot", "bench-serve.png", "PNG plot of --serve throughput (empty: none)")
	c.Flags().StringVar(&adapterSpec, "adapter", "none", "time the whole adaptation (features, k-means, hyper-network, low-rank head) against the plain forward of a batch (default --batches 32, --seq 256, --dtype f16): FILE, default, random (a random hyper-network for the benchmarked model) or none")
	c.Flags().IntVar(&adapterRank, "adapter-rank", 16, "rank of the --adapter random hyper-network")
	c.Flags().StringVar(&adapterSites, "adapter-sites", "", "block sites the --adapter random hyper-network also updates at every layer, comma-separated: "+strings.Join(model.DecoderSites, ","))
	c.Flags().IntVar(&clusters, "clusters", 0, "--adapter: k-means clusters per batch (0: ceil(batch / 16))")
	c.Flags().IntVar(&reps, "reps", 3, "timed repetitions of the prefill/decode and --adapter measurements; the median is reported (prefill/decode: the run of median decode rate, with every run's rates)")
	return c
}

func freeWeights(b gpu.Backend, w *model.Weights) {
	b.Free(w.Wte)
	b.Free(w.Wpe)
	b.Free(w.LnFG)
	b.Free(w.LnFB)
	for _, l := range w.Layers {
		for _, t := range []gpu.Tensor{l.Ln1G, l.Ln1B, l.AttnW, l.AttnB, l.ProjW, l.ProjB, l.Ln2G, l.Ln2B, l.FcW, l.FcB, l.Fc2W, l.Fc2B} {
			b.Free(t)
		}
	}
}

// adaptBench compares a forward pass with and without the whole
// adaptation (ChamaleonLLM's target: at most 5% more time).
type adaptBench struct {
	DType    string `json:"dtype"`
	Batch    int    `json:"batch"`
	Seq      int    `json:"seq"`
	Clusters int    `json:"clusters"`
	Adapter  string `json:"adapter"`
	Reps     int    `json:"reps"`
	// Medians over the repetitions, seconds. Base: the batched prefill
	// with the tied projection (last-position logits, greedy pick read
	// back, as generation runs it). Adapted: the same pass preceded by the
	// plan (features on the device, k-means, the hyper-network on each
	// cluster's mean) and with the fused low-rank head.
	BaseSeconds    float64 `json:"base_seconds"`
	AdaptedSeconds float64 `json:"adapted_seconds"`
	PlanSeconds    float64 `json:"plan_seconds"` // features + k-means + hyper-network
	HeadSeconds    float64 `json:"head_seconds"` // adapted forward - base forward (the low-rank apply)
	Overhead       float64 `json:"overhead"`     // (adapted - base) / base
	Target         float64 `json:"target"`       // 0.05
	MeetsTarget    bool    `json:"meets_target"`
}

// randomHyper is a hyper-network adapter with PyTorch's default
// initialisation (a non-zero update) for the model cfg/host, generating
// updates of the block sites too (comma-separated, "" none): for timing,
// where the weights' values do not matter.
func randomHyper(cfg model.Config, host []model.HostTensor, rank int, sites string, seed uint64) (*adapt.Adapter, error) {
	base, err := adapt.BaseOf(cfg, host)
	if err != nil {
		return nil, err
	}
	hc := adapt.DefaultHyper(cfg.NEmbd, cfg.VocabSize, rank)
	meta := adapt.Meta{Kind: adapt.KindHyper, Rank: rank, Alpha: hc.Alpha, Hidden: hc.Hidden, Dropout: hc.Dropout, Base: base}
	if sites != "" {
		meta.Sites = strings.Split(sites, ",")
	}
	a := &adapt.Adapter{Meta: meta, Tensors: adapt.InitHyper(hc, seed)}
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, t := range meta.Spec()[len(a.Tensors):] {
		t.Data = make([]float32, gpu.Numel(t.Shape))
		for i := range t.Data {
			t.Data[i] = float32(rng.NormFloat64() * 0.02)
		}
		a.Tensors = append(a.Tensors, t)
	}
	return a, a.Validate()
}

// benchAdapt times reps passes of batch random sequences of seq tokens
// with and without the adaptation, alternating them so that drift in the
// machine's load hits both alike.
func benchAdapt(m *model.Model, a *adapt.Adapter, spec string, batch, seq, k, reps int) (adaptBench, error) {
	r := adaptBench{DType: m.W.Wte.DType().String(), Batch: batch, Seq: seq, Adapter: spec, Reps: reps, Target: 0.05}
	if seq <= 0 || seq > m.Cfg.NCtx {
		return r, fmt.Errorf("--seq %d: want 1 to the model's context of %d", seq, m.Cfg.NCtx)
	}
	rt, err := adapt.NewRuntime(m, a)
	if err != nil {
		return r, err
	}
	defer rt.Free()
	rng := rand.New(rand.NewPCG(uint64(batch), uint64(seq)))
	toks := make([][]int32, batch)
	for i := range toks {
		toks[i] = make([]int32, seq)
		for j := range toks[i] {
			toks[i][j] = int32(rng.IntN(m.Cfg.VocabSize))
		}
	}
	cache, err := m.NewCache(batch, seq)
	if err != nil {
		return r, err
	}
	defer m.FreeCache(cache)
	ids, err := m.B.Alloc(gpu.I32, batch)
	if err != nil {
		return r, err
	}
	defer m.B.Free(ids)
	pass := func(ad model.Adapter) error {
		for i := range cache.Len {
			cache.Len[i] = 0
		}
		lg, err := m.ForwardAdapted(cache, toks, true, ad)
		if err != nil {
			return err
		}
		m.B.Argmax(ids, lg)
		_, err = m.B.ReadI32(ids)
		m.B.Free(lg)
		return err
	}
	var base, adapted, plans []float64
	for i := -1; i < reps; i++ { // i = -1 warms the pipelines up
		t0 := time.Now()
		if err := pass(nil); err != nil {
			return r, err
		}
		tb := time.Since(t0).Seconds()
		t0 = time.Now()
		plan, err := rt.Plan(toks, adapt.PlanOptions{Mode: adapt.ModeBatch, K: k, Seed: uint64(i + 2)})
		if err != nil {
			return r, err
		}
		tp := time.Since(t0).Seconds()
		err = pass(plan.Adapter(nil))
		ta := time.Since(t0).Seconds()
		r.Clusters = plan.K
		plan.Free()
		if err != nil {
			return r, err
		}
		if i >= 0 {
			base, adapted, plans = append(base, tb), append(adapted, ta), append(plans, tp)
		}
	}
	r.BaseSeconds, r.AdaptedSeconds, r.PlanSeconds = median(base), median(adapted), median(plans)
	r.HeadSeconds = r.AdaptedSeconds - r.PlanSeconds - r.BaseSeconds
	r.Overhead = (r.AdaptedSeconds - r.BaseSeconds) / r.BaseSeconds
	r.MeetsTarget = r.Overhead <= r.Target
	return r, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianBench returns the run of median decode rate (the lower middle one
// for an even count) and every run's prefill and decode rates, in run order.
func medianBench(runs []model.BenchResult) (model.BenchResult, []float64, []float64) {
	var pre, dec []float64
	for _, r := range runs {
		pre = append(pre, r.PrefillTokS)
		dec = append(dec, r.DecodeTokS)
	}
	order := slices.Clone(runs)
	slices.SortFunc(order, func(a, b model.BenchResult) int { return cmp.Compare(a.DecodeTokS, b.DecodeTokS) })
	return order[(len(order)-1)/2], pre, dec
}
