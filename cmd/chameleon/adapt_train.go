package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/data"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/train"
)

// adaptTrainFlags are the settings shared by adapt train and adapt eval.
type adaptDataFlags struct {
	corpus    string
	seq       int
	perDomain int
	batch     int
	seed      uint64
}

func (f *adaptDataFlags) add(c *cobra.Command, perDomain int) {
	c.Flags().StringVar(&f.corpus, "corpus", ".cache/corpus", "built corpus dir (make data)")
	c.Flags().IntVar(&f.seq, "seq", 128, "tokens per window (at most the model's context)")
	c.Flags().IntVar(&f.perDomain, "per-domain", perDomain, "windows per domain (the same for every domain)")
	c.Flags().IntVar(&f.batch, "batch", adapt.DefaultBatchSize, "sequences per batch: the cluster batch size (k = ceil(N / batch))")
	c.Flags().Uint64Var(&f.seed, "seed", 1, "seed of window sampling, k-means, initialisation and dropout")
}

// adapterData cuts a split into windows and computes their base hidden
// states and features, with a progress bar.
func (f *adaptDataFlags) load(s *session, split string) (*train.AdapterData, error) {
	if f.seq > s.m.Cfg.NCtx {
		return nil, fmt.Errorf("--seq %d exceeds the model's context of %d", f.seq, s.m.Cfg.NCtx)
	}
	c, err := data.Open(f.corpus)
	if err != nil {
		return nil, err
	}
	ws, domains, err := train.DomainWindows(c, split, s.tok, f.seq, f.perDomain, f.seed)
	if err != nil {
		return nil, err
	}
	bar := newBar("hidden states ("+split+")", "windows")
	bar.ChangeMax(len(ws))
	d, err := train.NewAdapterData(s.m, ws, domains, 16, func(n int) { _ = bar.Set(n) })
	_ = bar.Finish()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "%s: %d windows of %d tokens (%d per domain: %s)\n", split, len(ws), f.seq, f.perDomain, strings.Join(domains, " "))
	return d, nil
}

// adapterRecord is what adapt train writes beside each adapter.
type adapterRecord struct {
	Name       string             `json:"name"`
	Meta       adapt.Meta         `json:"meta"`
	Params     int                `json:"trainable_params"`
	Steps      int                `json:"steps"`
	Seconds    float64            `json:"seconds"`
	FirstLoss  float64            `json:"first_loss"`
	LastLoss   float64            `json:"last_loss"`
	ValLoss    map[string]float64 `json:"val_loss,omitempty"`
	ValBase    float64            `json:"val_loss_base"` // the base model on the same validation windows
	Train      train.AdapterConfig
	Windows    int `json:"train_windows"`
	WindowSize int `json:"window_tokens"`
}

// paramCount is the number of trainable parameters (centroids excluded).
func paramCount(a *adapt.Adapter) int {
	n := 0
	for _, t := range a.Tensors {
		if t.Name != adapt.CentroidsTensor {
			n += len(t.Data)
		}
	}
	return n
}

// hyperParams is the trainable-parameter count of a hyper-network.
func hyperParams(c adapt.HyperConfig) int {
	n := 0
	for _, t := range adapt.HyperSpec(c) {
		n += gpu.Numel(t.Shape)
	}
	return n
}

func adaptTrainCmd() *cobra.Command {
	var mf modelFlags
	var df adaptDataFlags
	var methods, out, hidden string
	var rank, epochs, warmup int
	var alpha, dropout float32
	var lr, minLR, wd, clip float64
	c := &cobra.Command{
		Use:   "train --method hyper|lora|lora-matched|experts[,...] --out DIR",
		Short: "Train adapters of the output projection on the corpus (next-token loss over all positions; base model frozen)",
		Long: `Train adapters of the model's output projection on windows of the corpus's
train split (--per-domain windows of --seq tokens from each domain), next-token
cross-entropy over every position, the base model frozen (its hidden states are
computed once). Methods:

  hyper         ChamaleonLLM: windows clustered by k-means on their features
                (k = ceil(N / batch)), one cluster per batch, the hyper-network
                turns the batch's mean feature into A (r x C) and B (V x r).
                The training centroids are stored in the file (online use).
  lora          a static LoRA of rank --rank, random batches.
  lora-matched  a static LoRA whose rank gives it as many trainable
                parameters as the hyper-network of --rank/--hidden.
  experts       one LoRA of rank --rank per domain, each trained on its own
                domain's windows (an oracle: it uses the domain labels).

Each writes OUT/NAME.safetensors, OUT/NAME-loss.png and OUT/NAME.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			var hid []int
			for _, f := range strings.Split(hidden, ",") {
				v, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || v <= 0 {
					return fmt.Errorf("--hidden %q: want positive widths, comma-separated", hidden)
				}
				hid = append(hid, v)
			}
			for _, name := range strings.Split(methods, ",") {
				if !map[string]bool{"hyper": true, "lora": true, "lora-matched": true, "experts": true}[name] {
					return fmt.Errorf("--method %q: want hyper, lora, lora-matched or experts", name)
				}
			}
			s, tb, base, err := mf.loadForAdapters("train")
			if err != nil {
				return err
			}
			defer s.close()
			d, err := df.load(s, "train")
			if err != nil {
				return err
			}
			val := df
			val.perDomain = max(8, df.perDomain/8)
			vd, err := val.load(s, "validation")
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			cfgC, cfgV := s.m.Cfg.NEmbd, s.m.Cfg.VocabSize
			hc := adapt.HyperConfig{C: cfgC, V: cfgV, Rank: rank, Alpha: alpha, Hidden: hid, Dropout: dropout}
			valBase := math.NaN()
			for _, name := range strings.Split(methods, ",") {
				meta := adapt.Meta{Rank: rank, Alpha: alpha, Base: base}
				switch name {
				case "hyper":
					meta.Kind, meta.Hidden, meta.Dropout = adapt.KindHyper, hid, dropout
				case "lora":
					meta.Kind = adapt.KindLoRA
				case "lora-matched":
					meta.Kind = adapt.KindLoRA
					meta.Rank = max(1, int(math.Round(float64(hyperParams(hc))/float64(cfgC+cfgV))))
				case "experts":
					meta.Kind = adapt.KindExperts
				default:
					return fmt.Errorf("--method %q: want hyper, lora, lora-matched or experts", name)
				}
				tc := train.AdapterConfig{Meta: meta, Batch: df.batch, Epochs: epochs, LR: lr, MinLR: minLR, Warmup: warmup,
					WeightDecay: wd, ClipNorm: clip, Seed: df.seed}
				fmt.Fprintf(os.Stderr, "training %s: %s\n", name, describeMeta(meta))
				bar := newBar(name, "steps")
				plain := logProgress(os.Stderr, 30*time.Second)
				var hist train.History
				t0 := time.Now()
				a, losses, err := train.TrainAdapter(tb, s.m.W.Wte, tc, d, func(p train.TrainProgress) {
					bar.ChangeMax(p.Steps)
					bar.Describe(fmt.Sprintf("%s loss %.3f |g| %.2f", name, p.Loss, p.Norm))
					_ = bar.Set(p.Step)
					plain(p.Step, p.Steps, fmt.Sprintf("%s loss %.3f", name, p.Loss))
					hist.Train = append(hist.Train, train.TrainPoint{Step: p.Step, Loss: p.Loss})
				})
				_ = bar.Finish()
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				sec := time.Since(t0).Seconds()
				rec := adapterRecord{Name: name, Meta: a.Meta, Params: paramCount(a), Steps: len(losses), Seconds: sec,
					FirstLoss: losses[0], LastLoss: losses[len(losses)-1], Train: tc, Windows: len(d.Windows), WindowSize: df.seq}
				// Validation with the method's own grouping.
				if vl, err := evalMethod(tb, s, a, vd, name, df.batch, df.seed); err == nil {
					rec.ValLoss = map[string]float64{}
					ms := vl.Mean()
					for i, dom := range vl.Domain {
						rec.ValLoss[dom] = ms[i]
					}
					rec.ValLoss["all"] = ms[len(ms)-1]
					byDom := map[string]float64{}
					for i, dom := range vl.Domain {
						byDom[dom] = ms[i]
					}
					hist.Val = append(hist.Val, train.EvalPoint{Step: len(losses), Loss: ms[len(ms)-1], ByDomain: byDom})
				} else {
					return fmt.Errorf("%s: validation: %w", name, err)
				}
				if math.IsNaN(valBase) { // the base model's loss is the same for every method: once
					bl, err := evalBase(tb, s, a, vd, df.batch, df.seed)
					if err != nil {
						return fmt.Errorf("%s: base validation: %w", name, err)
					}
					ms := bl.Mean()
					valBase = ms[len(ms)-1]
				}
				rec.ValBase = valBase
				path := filepath.Join(out, name+".safetensors")
				if err := adapt.Save(path, a); err != nil {
					return err
				}
				if err := train.WriteLossPlot(filepath.Join(out, name+"-loss.png"), hist); err != nil {
					return err
				}
				js, _ := json.MarshalIndent(rec, "", "  ")
				if err := os.WriteFile(filepath.Join(out, name+".json"), append(js, '\n'), 0o644); err != nil {
					return err
				}
				fmt.Printf("%s: %d trainable parameters, %d steps in %.0f s, loss %.3f -> %.3f, validation %.3f nats/token (base model %.3f); %s\n",
					name, rec.Params, rec.Steps, sec, rec.FirstLoss, rec.LastLoss, rec.ValLoss["all"], rec.ValBase, path)
			}
			return nil
		},
	}
	mf.add(c)
	df.add(c, 400)
	f := c.Flags()
	f.StringVar(&methods, "method", "hyper", "methods to train, comma-separated: hyper, lora, lora-matched, experts")
	f.StringVar(&out, "out", "", "output dir")
	f.IntVar(&rank, "rank", 8, "rank r of the update")
	f.Float32Var(&alpha, "alpha", 1, "scale of the update: logits = W h + alpha * B (A h)")
	f.StringVar(&hidden, "hidden", "64,32", "hyper-network hidden widths")
	f.Float32Var(&dropout, "dropout", 0.5, "hyper-network dropout in training")
	f.IntVar(&epochs, "epochs", 2, "passes over the training windows")
	f.Float64Var(&lr, "lr", 3e-3, "peak learning rate")
	f.Float64Var(&minLR, "min-lr", 3e-4, "floor of the cosine decay")
	f.IntVar(&warmup, "warmup", 20, "linear warm-up steps")
	f.Float64Var(&wd, "weight-decay", 0, "AdamW weight decay (2-D parameters)")
	f.Float64Var(&clip, "clip", 1, "global gradient-norm clip (0: none)")
	return c
}

func describeMeta(m adapt.Meta) string {
	switch m.Kind {
	case adapt.KindHyper:
		return fmt.Sprintf("hyper-network C=%d hidden %v -> r=%d (V=%d), dropout %g, alpha %g", m.Base.Config.NEmbd, m.Hidden, m.Rank, m.Base.Config.VocabSize, m.Dropout, m.Alpha)
	case adapt.KindExperts:
		if m.Experts == 0 { // set from the corpus's domains when training starts
			return fmt.Sprintf("one expert per domain, rank %d, alpha %g", m.Rank, m.Alpha)
		}
		return fmt.Sprintf("%d experts of rank %d, alpha %g", m.Experts, m.Rank, m.Alpha)
	}
	return fmt.Sprintf("LoRA of rank %d, alpha %g", m.Rank, m.Alpha)
}

// evalMethod scores an adapter on d with the grouping its method uses:
// hyper: the windows clustered (k-means, one cluster per batch); lora:
// random batches; experts: each window's domain.
func evalMethod(b gpu.TrainBackend, s *session, a *adapt.Adapter, d *train.AdapterData, name string, batch int, seed uint64) (train.DomainLoss, error) {
	n, err := train.NewAdapterNet(b, s.m.W.Wte, a.Meta, trainable(a))
	if err != nil {
		return train.DomainLoss{}, err
	}
	defer n.Free()
	var groups []train.Group
	switch a.Meta.Kind {
	case adapt.KindHyper:
		if groups, _, err = d.ClusteredGroups(b, batch, seed); err != nil {
			return train.DomainLoss{}, err
		}
	case adapt.KindExperts:
		groups = d.DomainGroups(batch)
	default:
		groups = d.RandomGroups(batch, seed)
	}
	return train.EvalGroups(n, d, groups, false, nil)
}

// trainable is an adapter's tensors without the stored centroids.
func trainable(a *adapt.Adapter) []model.HostTensor {
	if a.Meta.Centroids > 0 {
		return a.Tensors[:len(a.Tensors)-1]
	}
	return a.Tensors
}

// evalBase scores d with the base model (the adapter's update off).
func evalBase(b gpu.TrainBackend, s *session, a *adapt.Adapter, d *train.AdapterData, batch int, seed uint64) (train.DomainLoss, error) {
	n, err := train.NewAdapterNet(b, s.m.W.Wte, a.Meta, trainable(a))
	if err != nil {
		return train.DomainLoss{}, err
	}
	defer n.Free()
	return train.EvalGroups(n, d, d.RandomGroups(batch, seed), true, nil)
}

// loadForAdapters opens the model with f32 weights on a backend that can
// run the adapters' backward kernels (adapt train and adapt eval both need
// them), with the frozen base the adapters sit on; what names the job for
// the error when the backend cannot. The caller closes the session.
func (f *modelFlags) loadForAdapters(what string) (*session, gpu.TrainBackend, adapt.Base, error) {
	f.dtype = "f32"
	s, err := f.load()
	if err != nil {
		return nil, nil, adapt.Base{}, err
	}
	tb, ok := s.m.B.(gpu.TrainBackend)
	if !ok {
		s.close()
		return nil, nil, adapt.Base{}, fmt.Errorf("backend %s cannot %s", s.m.B.Name(), what)
	}
	base, err := adapt.BaseOfModel(s.m)
	if err != nil {
		s.close()
		return nil, nil, adapt.Base{}, err
	}
	return s, tb, base, nil
}
