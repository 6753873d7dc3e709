package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
	"github.com/chameleon-llm/chameleon/train"
)

// trainOpts are train's flags; tc holds the hyperparameters' flags (their
// defaults train.DefaultConfig's).
type trainOpts struct {
	corpus, out, config, tokDir string
	nEmbd, nLayer, nHead, nCtx  int
	resume, cpu                 bool
	tc                          train.Config
}

// trainCmd is `chameleon train`: pre-train a GPT-2 from scratch on the
// corpus (see package train for the loop, checkpoints and resume).
func trainCmd() *cobra.Command {
	o := &trainOpts{tc: train.DefaultConfig(model.Config{})}
	cmd := &cobra.Command{
		Use:   "train --corpus DIR --out DIR",
		Short: "Train a GPT-2 from scratch on the corpus (AdamW, checkpoints, --resume)",
		Long: `Train a GPT-2 from scratch on a built corpus (make data): batches of --batch
windows of --seq tokens drawn uniformly from the train split of every domain
(documents tokenized with --tokenizer, GPT-2's BPE by default, and joined
with <|endoftext|>), AdamW
with warm-up and cosine decay, the validation loss of each domain every
--eval-every steps (and a loss curve, OUT/loss.png), and a checkpoint every
--save-every steps in OUT/checkpoint (a Hugging Face model directory plus the
optimizer state, the step, the sampler state and the exact configuration).

--resume continues OUT's checkpoint exactly; flags left unset take the
checkpoint's values, and a flag that contradicts them is refused. Ctrl-C saves
a checkpoint and stops. A NaN or infinite loss stops the run and keeps the
last good checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			return o.run(cmd.Flags().Changed)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.corpus, "corpus", "", "built corpus dir (make data)")
	f.StringVar(&o.out, "out", "", "output dir: checkpoint/ and loss.png")
	f.StringVar(&o.tokDir, "tokenizer", "", "dir with encoder.json and vocab.bpe (e.g. from 'chameleon data vocab'); default GPT-2's (with --config custom the model takes its vocabulary size)")
	f.StringVar(&o.config, "config", "tiny", "architecture: "+strings.Join(configNames(), ", ")+", or custom (with --n-embd --n-layer --n-head --n-ctx)")
	f.IntVar(&o.nEmbd, "n-embd", 0, "model width C (overrides --config)")
	f.IntVar(&o.nLayer, "n-layer", 0, "layers L (overrides --config)")
	f.IntVar(&o.nHead, "n-head", 0, "attention heads H (overrides --config)")
	f.IntVar(&o.nCtx, "n-ctx", 0, "context length (overrides --config)")
	f.IntVar(&o.tc.Steps, "steps", o.tc.Steps, "optimisation steps")
	f.IntVar(&o.tc.Batch, "batch", o.tc.Batch, "sequences per step B")
	f.IntVar(&o.tc.Seq, "seq", o.tc.Seq, "tokens per sequence T")
	f.Float64Var(&o.tc.LR, "lr", o.tc.LR, "peak learning rate")
	f.Float64Var(&o.tc.MinLR, "min-lr", o.tc.MinLR, "floor of the cosine decay (unset: lr/10)")
	f.IntVar(&o.tc.Warmup, "warmup", o.tc.Warmup, "linear warm-up steps")
	f.Float64Var(&o.tc.WeightDecay, "weight-decay", o.tc.WeightDecay, "AdamW weight decay (2-D weights only)")
	f.Float64Var(&o.tc.ClipNorm, "clip", o.tc.ClipNorm, "global gradient-norm clip (0: none)")
	f.Uint64Var(&o.tc.Seed, "seed", o.tc.Seed, "seed of the initialisation and of batch sampling")
	f.IntVar(&o.tc.EvalEvery, "eval-every", o.tc.EvalEvery, "steps between validation evaluations")
	f.IntVar(&o.tc.SaveEvery, "save-every", o.tc.SaveEvery, "steps between checkpoints")
	f.IntVar(&o.tc.EvalTokens, "eval-tokens", o.tc.EvalTokens, "validation tokens per domain per evaluation")
	f.BoolVar(&o.resume, "resume", false, "continue OUT's checkpoint")
	f.BoolVar(&o.cpu, "cpu", false, "train on the plain-Go reference backend")
	return cmd
}

// run resolves the configuration and the tokenizer, loads the corpus and
// runs train.Run with a progress bar.
func (o *trainOpts) run(changed func(string) bool) error {
	if o.corpus == "" || o.out == "" {
		return fmt.Errorf("train: --corpus and --out are required")
	}
	cfg, err := o.configFor(changed)
	if err != nil {
		return err
	}
	tok, tokFrom, err := o.tokenizer()
	if err != nil {
		return err
	}
	if o.config == "custom" && !o.resume {
		cfg.Model.VocabSize = tok.VocabSize() // a custom model takes the tokenizer's vocabulary
	}
	if cfg.Model.VocabSize != tok.VocabSize() {
		return fmt.Errorf("train: the model's vocabulary of %d differs from the tokenizer's %d (%s)", cfg.Model.VocabSize, tok.VocabSize(), tokFrom)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	t0 := time.Now()
	ds, err := train.LoadCorpus(o.corpus, tok)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "corpus %s: %d training tokens, domains %s (tokenized in %.1fs)\n",
		o.corpus, len(ds.Train), strings.Join(ds.Domains, " "), time.Since(t0).Seconds())
	b, dev, err := openBackend(o.cpu)
	if err != nil {
		return err
	}
	if dev != nil {
		defer dev.Close()
	}
	tb, ok := b.(gpu.TrainBackend)
	if !ok {
		return fmt.Errorf("train: backend %s cannot train", b.Name())
	}
	fmt.Fprintf(os.Stderr, "training %s (%d parameters) on %s: %d steps of %d x %d tokens\n",
		describe(cfg.Model), cfg.Model.Params(), b.Name(), cfg.Steps, cfg.Batch, cfg.Seq)
	bar := newBar("train", "steps")
	bar.ChangeMax(cfg.Steps)
	plain := logProgress(os.Stderr, 30*time.Second)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := train.Run(ctx, train.Options{
		Config: cfg, Out: o.out, Resume: o.resume, Data: ds, Backend: tb,
		SaveExtra: tok.WriteFiles,
		Log:       barWriter{bar, os.Stdout},
		Progress: func(p train.Progress) {
			desc := fmt.Sprintf("loss %.3f lr %.2e |g| %.2f %.0f tok/s", p.Loss, p.LR, p.GradNorm, p.TokensPerSec)
			bar.Describe(desc)
			_ = bar.Set(p.Step)
			plain(p.Step, p.Steps, desc)
		},
	})
	_ = bar.Finish()
	if err != nil {
		return err
	}
	fmt.Printf("done: step %d, train loss %.4f, %.0f tokens/s; model in %s, loss curve %s\n",
		res.Step, res.Loss, res.TokensPerSec, train.CheckpointDir(o.out), filepath.Join(o.out, train.LossPlot))
	return nil
}

// configFor is the run's configuration: the checkpoint's when resuming,
// else --config's architecture with the defaults; then every flag given
// on top (--lr alone also sets --min-lr to a tenth of it).
func (o *trainOpts) configFor(changed func(string) bool) (train.Config, error) {
	cfg := o.tc
	if o.resume {
		if saved, err := train.ReadCheckpointConfig(train.CheckpointDir(o.out)); err == nil {
			cfg = saved
		}
	}
	if !o.resume || changed("config") || cfg.Model.NEmbd == 0 {
		if o.config != "custom" {
			mc, ok := model.Configs[o.config]
			if !ok {
				return cfg, fmt.Errorf("train: unknown --config %q (known: %s, custom)", o.config, strings.Join(configNames(), ", "))
			}
			cfg.Model = mc
		} else {
			cfg.Model = model.Configs["tiny"]
			for _, f := range []string{"n-embd", "n-layer", "n-head", "n-ctx"} {
				if !changed(f) {
					return cfg, fmt.Errorf("train: --config custom needs --n-embd, --n-layer, --n-head and --n-ctx")
				}
			}
		}
	}
	for _, d := range []struct {
		flag string
		dst  *int
		v    int
	}{{"n-embd", &cfg.Model.NEmbd, o.nEmbd}, {"n-layer", &cfg.Model.NLayer, o.nLayer}, {"n-head", &cfg.Model.NHead, o.nHead}, {"n-ctx", &cfg.Model.NCtx, o.nCtx}} {
		if changed(d.flag) {
			*d.dst = d.v
		}
	}
	setIfChanged(changed, &cfg, o.tc)
	if !changed("min-lr") && changed("lr") {
		cfg.MinLR = cfg.LR / 10
	}
	return cfg, nil
}

// tokenizer is the run's tokenizer and where it came from: --tokenizer,
// else the checkpoint's own when resuming, else GPT-2's.
func (o *trainOpts) tokenizer() (*tokenizer.Tokenizer, string, error) {
	from := o.tokDir
	if o.tokDir != "" {
		if _, err := os.Stat(filepath.Join(o.tokDir, "vocab.bpe")); err != nil {
			return nil, "", fmt.Errorf("train: --tokenizer %s: no vocab.bpe there (write one with `chameleon data vocab --out %s`)", o.tokDir, o.tokDir)
		}
	}
	if from == "" && o.resume {
		if _, err := os.Stat(filepath.Join(train.CheckpointDir(o.out), "vocab.bpe")); err == nil {
			from = train.CheckpointDir(o.out)
		}
	}
	tok, err := tokenizerFor(from)
	if from == "" {
		from = "GPT-2's"
	}
	return tok, from, err
}

// setIfChanged copies into cfg each hyperparameter whose flag was given.
func setIfChanged(changed func(string) bool, cfg *train.Config, f train.Config) {
	for flag, set := range map[string]func(){
		"steps": func() { cfg.Steps = f.Steps }, "batch": func() { cfg.Batch = f.Batch }, "seq": func() { cfg.Seq = f.Seq },
		"lr": func() { cfg.LR = f.LR }, "min-lr": func() { cfg.MinLR = f.MinLR }, "warmup": func() { cfg.Warmup = f.Warmup },
		"weight-decay": func() { cfg.WeightDecay = f.WeightDecay }, "clip": func() { cfg.ClipNorm = f.ClipNorm },
		"seed": func() { cfg.Seed = f.Seed }, "eval-every": func() { cfg.EvalEvery = f.EvalEvery },
		"save-every": func() { cfg.SaveEvery = f.SaveEvery }, "eval-tokens": func() { cfg.EvalTokens = f.EvalTokens },
	} {
		if changed(flag) {
			set()
		}
	}
}

func configNames() []string {
	var out []string
	for k := range model.Configs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func describe(c model.Config) string {
	return fmt.Sprintf("C=%d L=%d H=%d ctx=%d", c.NEmbd, c.NLayer, c.NHead, c.NCtx)
}

// barWriter clears the progress bar before each log line so the two do
// not interleave on a terminal.
type barWriter struct {
	bar *progressbar.ProgressBar
	w   io.Writer
}

func (b barWriter) Write(p []byte) (int, error) {
	_ = b.bar.Clear()
	return b.w.Write(p)
}
