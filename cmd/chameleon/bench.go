package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// `chameleon bench` has five modes, one file each: prefill and decode
// (bench_decode.go, the default), --train (bench_train.go), --serve
// (bench_serve.go), --quality (bench_quant.go) and --adapter
// (bench_adapter.go). This file parses the flags, opens the device and the
// model, and emits the report (text as it goes, or JSON at the end).

// benchReport is what `chameleon bench --json` prints (docs/cli-json.md).
type benchReport struct {
	Adapter  string              `json:"adapter"`
	Model    string              `json:"model"`
	Params   int                 `json:"params"`
	Ceilings *gpu.Ceilings       `json:"ceilings,omitempty"`
	Runs     []benchRun          `json:"runs,omitempty"`
	Train    []trainBench        `json:"train,omitempty"`
	Serve    []serveBench        `json:"serve,omitempty"`
	Adapt    []adaptrun.Overhead `json:"adapt,omitempty"`
	Quality  []qualityBench      `json:"quality,omitempty"`
}

// benchOpts are bench's flags.
type benchOpts struct {
	cfgName, modelPath, dtypes, batches string
	prompt, decode, seq                 int
	asJSON, train, serve, quality       bool
	plotPath                            string
	adapterSpec, adapterSites           string
	adapterWindows                      string
	checkTokens                         int
	adapterRank, clusters, reps         int
	planMode                            string
}

// bench is one run of the command: the device, the model and the report
// the mode fills in.
type bench struct {
	o      *benchOpts
	d      *gpu.Device
	w      *gpu.WebGPU
	cfg    model.Config
	host   []model.HostTensor
	name   string      // how the report names the model
	bs     []int       // --batches
	dts    []gpu.DType // --dtype
	report benchReport
}

// log prints a line of the text report (nothing with --json).
func (b *bench) log(format string, a ...any) {
	if !b.o.asJSON {
		fmt.Printf(format, a...)
	}
}

// emit prints the JSON report (with --json; the text was printed as the
// mode went).
func (b *bench) emit() error {
	if !b.o.asJSON {
		return nil
	}
	return printJSON(os.Stdout, b.report)
}

func benchCmd() *cobra.Command {
	o := &benchOpts{}
	c := &cobra.Command{
		Use:   "bench",
		Short: "Prefill and decode tokens/s at several batch sizes, per-kernel GPU time, and the share of the device's measured ceilings",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			return o.run(cmd)
		},
	}
	f := c.Flags()
	f.StringVar(&o.cfgName, "config", "gpt2", "architecture with random weights when no --model is given")
	f.StringVar(&o.modelPath, "model", "", "benchmark this checkpoint instead")
	f.StringVar(&o.dtypes, "dtype", "f32,f16", "weight dtypes to run, comma-separated: f32, f16, q8_0, q4_0, q4_k (quantized: the layer matrices, embeddings f16)")
	f.StringVar(&o.batches, "batches", "1,8,32", "batch sizes, comma-separated")
	f.IntVar(&o.prompt, "prompt", 32, "prompt tokens per sequence")
	f.IntVar(&o.decode, "decode", 8, "decode steps")
	f.BoolVar(&o.asJSON, "json", false, "print JSON")
	f.BoolVar(&o.quality, "quality", false, "measure what quantization costs instead: perplexity under each --dtype of the f16 model's own greedy continuations (--decode tokens) of random prompts (as many as the first --batches)")
	f.BoolVar(&o.train, "train", false, "measure training steps instead (use with e.g. --config tiny --batches 8 --seq 64)")
	f.IntVar(&o.seq, "seq", 64, "tokens per sequence for --train (and --adapter, default 256 there)")
	f.BoolVar(&o.serve, "serve", false, "measure the completions server on loopback: requests/s and tokens/s against concurrency (--batches are the concurrency levels, --decode the tokens per request)")
	f.StringVar(&o.plotPath, "plot", "bench-serve.png", "PNG plot of --serve throughput (empty: none)")
	f.StringVar(&o.adapterSpec, "adapter", "none", "time the whole adaptation (features, k-means, hyper-network, low-rank head) against the plain forward of a batch (default --batches 32, --seq 256, --dtype f16): FILE, default, random (a random hyper-network for the benchmarked model) or none")
	f.StringVar(&o.adapterWindows, "adapter-windows", "", "--adapter: time it on the test windows of FILE (adapt bench --save-windows, domains interleaved, cut to --seq) instead of random tokens, which a gated adapter keeps at the base model")
	f.IntVar(&o.checkTokens, "check-tokens", 0, "--adapter: the self-check scores at most this many of a prompt's last predictions (0: the runtime's default, 64; -1: all)")
	f.IntVar(&o.adapterRank, "adapter-rank", 16, "rank of the --adapter random hyper-network")
	f.StringVar(&o.adapterSites, "adapter-sites", "", "block sites the --adapter random hyper-network also updates at every layer, comma-separated: "+strings.Join(model.DecoderSites, ","))
	f.IntVar(&o.clusters, "clusters", 0, "--adapter: k-means clusters per batch (0: ceil(batch / 16))")
	f.StringVar(&o.planMode, "adapt-mode", string(adapt.ModeBatch), "--adapter: how the plan groups the batch: batch (k-means, as generate runs by default) or online (each prompt's nearest training centroid, as serve does; where a stored selection, adapt gate --select, applies)")
	f.IntVar(&o.reps, "reps", 3, "timed repetitions of the prefill/decode and --adapter measurements; the median is reported (prefill/decode: the run of median decode rate, with every run's rates)")
	return c
}

// adaptMode is whether --adapter asks for the adaptation's overhead.
func (o *benchOpts) adaptMode() bool { return o.adapterSpec != "" && o.adapterSpec != "none" }

// run checks the flags, opens the device and the model, runs the mode and
// emits the report.
func (o *benchOpts) run(cmd *cobra.Command) error {
	if o.adaptMode() {
		if o.train {
			return fmt.Errorf("--adapter measures the adaptation's overhead (with --serve: the adapted server's throughput): drop --train")
		}
		// The target shape unless asked otherwise.
		for flag, set := range map[string]func(){"batches": func() { o.batches = "32" }, "seq": func() { o.seq = 256 }, "dtype": func() { o.dtypes = "f16" }} {
			if !cmd.Flags().Changed(flag) {
				set()
			}
		}
	}
	if o.reps < 1 {
		return fmt.Errorf("--reps %d: want at least 1", o.reps)
	}
	if err := positive("--prompt", o.prompt); err != nil {
		return err
	}
	if err := positive("--decode", o.decode); err != nil {
		return err
	}
	b := &bench{o: o}
	var err error
	if b.bs, err = parseBatches(o.batches); err != nil {
		return err
	}
	if b.dts, err = parseDTypes(o.dtypes); err != nil {
		return err
	}
	if b.d, err = gpu.Open(gpu.Options{Adapter: deviceFlag}); err != nil {
		return err
	}
	defer b.d.Close()
	b.w = gpu.NewWebGPU(b.d)
	if err := b.loadModel(); err != nil {
		return err
	}
	b.report = benchReport{Adapter: b.d.String(), Model: b.name, Params: b.cfg.Params()}
	switch {
	case o.adaptMode() && o.serve:
		err = b.runServe()
	case o.adaptMode():
		err = b.runAdapter()
	case o.quality:
		err = b.runQuality()
	case o.train:
		err = b.runTrain()
	case o.serve:
		err = b.runServe()
	default:
		err = b.runDecode()
	}
	if err != nil {
		return err
	}
	return b.emit()
}

// loadModel reads the model: the default model (--adapter default without
// --model), --model, or random weights of --config.
func (b *bench) loadModel() (err error) {
	o := b.o
	switch {
	case o.adaptMode() && o.adapterSpec == "default" && o.modelPath == "": // the default hyper-network on the default model
		fsys, err := defaults.Model()
		if err != nil {
			return err
		}
		b.cfg, b.host, err = model.LoadHFFS(fsys)
		b.name = "the default model"
		return err
	case o.modelPath != "":
		b.cfg, b.host, err = model.Load(o.modelPath)
		b.name = o.modelPath
		return err
	}
	cfg, ok := model.Configs[o.cfgName]
	if !ok {
		return fmt.Errorf("--config %q unknown", o.cfgName)
	}
	b.cfg, b.host, b.name = cfg, model.RandomInit(cfg, 1), o.cfgName
	return nil
}

// measureCeilings measures the adapter's ceilings into the report and says
// them (with the caveat of a CPU adapter's timestamps).
func (b *bench) measureCeilings() (gpu.Ceilings, error) {
	ceil, err := b.w.MeasureCeilings(3)
	if err != nil {
		return ceil, err
	}
	b.report.Ceilings = &ceil
	b.log("ceilings: matmul %.2f GFLOP/s (256x768x3072 f32), copy %.2f GB/s (64 MiB)\n", ceil.MatMulGFLOPs, ceil.CopyGBs)
	if b.d.Info.Type == "cpu" {
		// Seen on lavapipe: the timestamps around the texture matmuls imply
		// several times the FLOP rate their wall-clock benchmark measures.
		b.log("note: this CPU adapter's GPU timestamps do not bracket the kernels reliably: the per-kernel table and\n" +
			"      the matmul GFLOP/s derived from it are indicative only; tok/s are wall-clock\n")
	}
	return ceil, nil
}

// upload puts the host weights on the device as dt.
func (b *bench) upload(dt gpu.DType) (*model.Model, error) {
	wts, err := model.Upload(b.w, b.cfg, b.host, dt)
	if err != nil {
		return nil, err
	}
	return &model.Model{Cfg: b.cfg, W: wts, B: b.w}, nil
}

// parseBatches reads --batches: positive integers separated by commas.
func parseBatches(s string) ([]int, error) {
	var bs []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--batches %q: want positive integers separated by commas", s)
		}
		bs = append(bs, n)
	}
	return bs, nil
}

// parseDTypes reads --dtype: weight dtypes separated by commas.
func parseDTypes(s string) ([]gpu.DType, error) {
	var dts []gpu.DType
	for _, f := range strings.Split(s, ",") {
		dt, err := benchDType(f)
		if err != nil {
			return nil, err
		}
		dts = append(dts, dt)
	}
	return dts, nil
}
