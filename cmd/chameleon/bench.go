package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/train"
)

// benchReport is what `chameleon bench --json` prints.
type benchReport struct {
	Adapter  string        `json:"adapter"`
	Model    string        `json:"model"`
	Params   int           `json:"params"`
	Ceilings *gpu.Ceilings `json:"ceilings,omitempty"`
	Runs     []benchRun    `json:"runs,omitempty"`
	Train    []trainBench  `json:"train,omitempty"`
	Serve    []serveBench  `json:"serve,omitempty"`
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
	model.BenchResult
	Kernels []kernelShare `json:"kernels,omitempty"`
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
	var asJSON, trainMode, serveMode bool
	var plotPath string
	c := &cobra.Command{
		Use:   "bench",
		Short: "Prefill and decode tokens/s at several batch sizes, per-kernel GPU time, and the share of the adapter's measured ceilings",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			d, err := gpu.Open(gpu.Options{Adapter: deviceFlag})
			if err != nil {
				return err
			}
			defer d.Close()
			w := gpu.NewWebGPU(d)
			var cfg model.Config
			var host []model.HostTensor
			name := cfgName
			if modelPath != "" {
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
				dt, wb := gpu.F32, 4
				switch strings.TrimSpace(ds) {
				case "f32":
				case "f16":
					dt, wb = gpu.F16, 2
				default:
					return fmt.Errorf("--dtype %q: want f32, f16 or both", ds)
				}
				wts, err := model.Upload(w, cfg, host, dt)
				if err != nil {
					return err
				}
				m := &model.Model{Cfg: cfg, W: wts, B: w}
				for _, b := range bs {
					if err := w.StartProfile(); err != nil {
						return err
					}
					r, err := m.Bench(b, prompt, decode, 1, wb)
					prof, perr := w.StopProfile()
					if err != nil {
						return err
					}
					if perr != nil {
						return perr
					}
					run := benchRun{DType: dt.String(), BenchResult: r}
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
					df, dbytes := cfg.MatMulWork(b, b, wb)
					run.MatMulGFLOPs = (pf + df*float64(decode)) / mm / 1e9
					run.MatMulOfCeiling = run.MatMulGFLOPs / ceil.MatMulGFLOPs
					run.DecodeWeightGBs = dbytes * float64(decode) / r.DecodeSeconds / 1e9
					run.DecodeOfBandwidth = run.DecodeWeightGBs / ceil.CopyGBs
					rep.Runs = append(rep.Runs, run)
					log("%s batch %2d: prefill %8.1f tok/s, decode %7.2f tok/s; matmul kernels %.2f GFLOP/s (%.0f%% of ceiling); decode streams weights at %.2f GB/s (%.0f%% of copy)\n",
						dt, b, r.PrefillTokS, r.DecodeTokS, run.MatMulGFLOPs, 100*run.MatMulOfCeiling, run.DecodeWeightGBs, 100*run.DecodeOfBandwidth)
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
	c.Flags().StringVar(&dtypes, "dtype", "f32,f16", "weight dtypes to run, comma-separated")
	c.Flags().StringVar(&batches, "batches", "1,8,32", "batch sizes, comma-separated")
	c.Flags().IntVar(&prompt, "prompt", 32, "prompt tokens per sequence")
	c.Flags().IntVar(&decode, "decode", 8, "decode steps")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&trainMode, "train", false, "measure training steps instead (use with e.g. --config tiny --batches 8 --seq 64)")
	c.Flags().IntVar(&seq, "seq", 64, "tokens per sequence for --train")
	c.Flags().BoolVar(&serveMode, "serve", false, "measure the completions server on loopback: requests/s and tokens/s against concurrency (--batches are the concurrency levels, --decode the tokens per request)")
	c.Flags().StringVar(&plotPath, "plot", "bench-serve.png", "PNG plot of --serve throughput (empty: none)")
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
