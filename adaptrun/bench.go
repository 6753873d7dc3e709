package adaptrun

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/chameleon-llm/chameleon/model"
)

// Row roles in the benchmark's table.
const (
	RoleBase     = "base"
	RoleBaseline = "baseline" // a competitor without labels: the best of these is what the method must beat
	RoleOracle   = "oracle"   // uses the domain labels: the gap the method should close
	RoleMethod   = "method"
	RoleControl  = "control" // would show a gain that is not the method's
)

// Config configures Run.
type Config struct {
	Methods []Method
	LRs     []float64 // learning-rate grid, chosen per method on validation (first seed)
	// EpochGrid, when it has more than one value, is chosen on validation
	// with the rate: every pair of epochs and rate trains at the first
	// seed (empty: Opts.Epochs alone).
	EpochGrid []int
	// ClusterGrid, when it has more than one value, is chosen on
	// validation with the rate and epochs for every method trained on
	// clusters (hyper): each value a Method.ClusterSize, every point of the
	// grid trained at the first seed.
	ClusterGrid []int
	// DecayGrid, when it has more than one value, is chosen on validation
	// with the rate, epochs and cluster size for every gated basis: each
	// value a Method.GateDecay, every point trained at the first seed.
	DecayGrid []float64
	// CheckSlacks, when set, is a grid of self-check slacks
	// (Evaluator.CheckSlack) that every self-checked row chooses from on
	// the mixed validation stream: the adaptation domains' validation
	// windows and the pretraining domains' (Sets.HarmVal), first seed.
	CheckSlacks []float64
	Seeds       int       // training seeds at the chosen rate (and epochs)
	Opts        TrainOpts // Batch, Epochs, Alpha (LR, Seed and, with EpochGrid, Epochs are set per run)
	Primary     string    // the hyper method whose online row is tested against the baselines
	Bootstrap   int       // resamples of the paired bootstrap
	Log         io.Writer
	// Progress reports training steps (what names the run).
	Progress func(what string, step, steps int, loss float64)
	// Checkpoint, if set, gets the result so far after every method.
	Checkpoint func(*Result)
	// SharedGates adds, for each feature space named, every gated row of
	// every method again behind the one gate all methods share in that
	// space (Evaluator.SharedGate; Row.Gate names it).
	SharedGates []string
}

// Row is one line of the benchmark: a trained method (or none) under one
// grouping, scored on every seed.
type Row struct {
	Name          string             `json:"name"`
	Method        string             `json:"method,omitempty"`
	Kind          string             `json:"kind,omitempty"`
	Grouping      string             `json:"grouping"`
	Role          string             `json:"role"`
	Params        int                `json:"trainable_params"`
	Bytes         int64              `json:"bytes_stored"`
	FLOPsPerToken float64            `json:"added_flops_per_token"`
	LR            float64            `json:"lr,omitempty"`
	LRVal         map[string]float64 `json:"lr_validation,omitempty"` // DecayKey(ClusterKey(GridKey(rate, epochs), size), decay) -> validation loss (first seed)
	Epochs        int                `json:"epochs,omitempty"`        // passes over the training windows, chosen with the rate when the grid has several
	ClusterSize   int                `json:"cluster_size,omitempty"`  // training windows a cluster (Method.ClusterSize), chosen with the rate when the grid has several
	GateDecay     float64            `json:"gate_decay,omitempty"`    // the gate network's weight decay (Method.GateDecay), chosen with the rate when the grid has several
	Val           float64            `json:"validation_loss"`         // first seed, chosen rate
	Test          []Scores           `json:"test"`                    // per seed, adaptation domains' test windows
	Harm          []Scores           `json:"harm,omitempty"`          // per seed, pretraining and held-out test windows
	TrainSeconds  float64            `json:"train_seconds,omitempty"`
	// Check and HarmCheck are, for the self-checked rows, per seed and
	// window, the adapted prompt's summed loss minus the base model's (Loss)
	// and the prompt tokens scored (N), on the test and the harm windows:
	// the self-check kept the update where Loss < 0 (at slack 0). Other slacks can be
	// replayed from them (scripts/checkcurve).
	Check     []Scores `json:"check,omitempty"`
	HarmCheck []Scores `json:"harm_check,omitempty"`
	// CheckSlack is the self-check's slack the row chose (Config.CheckSlacks),
	// SlackVal each slack's loss on the mixed validation stream.
	CheckSlack float64            `json:"check_slack,omitempty"`
	SlackVal   map[string]float64 `json:"slack_validation,omitempty"`
	// Gate is the feature space of the shared gate the row was scored
	// behind (Config.SharedGates); empty: the adapter's own gate.
	Gate string `json:"gate,omitempty"`
	// Selected is, for the selected rows, per seed, each test window's
	// choice of candidate (selectByPrompt; -1: the base model), before any
	// gate; SelectedOwn, for experts, the share of test windows that chose
	// their own domain's expert.
	Selected    [][]int   `json:"selected,omitempty"`
	SelectedOwn []float64 `json:"selected_own,omitempty"`
}

// Result is everything the benchmark measured; Report turns it into
// tables, intervals and a plot.
type Result struct {
	Model       string            `json:"model"`
	T           int               `json:"t"`
	Prompt      int               `json:"prompt"`
	Roles       map[string]string `json:"roles"`
	Config      Config            `json:"-"`
	Methods     []Method          `json:"methods"`
	LRs         []float64         `json:"lrs"`
	EpochGrid   []int             `json:"epoch_grid,omitempty"`
	ClusterGrid []int             `json:"cluster_grid,omitempty"`
	DecayGrid   []float64         `json:"decay_grid,omitempty"`
	Seeds       int               `json:"seeds"`
	Opts        TrainOpts         `json:"opts"`
	Primary     string            `json:"primary"`
	Windows     map[string]int    `json:"windows"` // split -> windows
	TestDomains []string          `json:"test_domains"`
	TestDom     []int             `json:"test_dom"`
	TestBytes   []int             `json:"test_bytes"`
	HarmDomains []string          `json:"harm_domains"`
	HarmDom     []int             `json:"harm_dom"`
	HarmBytes   []int             `json:"harm_bytes"`
	Temperature float64           `json:"temperature"`
	Rows        []Row             `json:"rows"`
	Seconds     float64           `json:"seconds"`
	Bootstrap   int               `json:"bootstrap"`
}

// Sets are the prepared splits Run needs.
type Sets struct {
	Train, Validation, Test, Harm *Set // Harm may be nil
	Fit                           *Set // the pretraining domains' training windows, for the gate; may be nil
	// HarmVal is the pretraining domains' validation windows, for the
	// self-check's slack (Config.CheckSlacks); may be nil.
	HarmVal *Set
}

// PrepareSets runs the frozen base model over every split of w that has
// windows (Prepare, batch windows at a time). progress, if set, gets the
// split, the windows done and the split's size.
func PrepareSets(m *model.Model, w *Windows, batch int, progress func(split string, done, total int)) (Sets, error) {
	var sets Sets
	for _, x := range []struct {
		split string
		dst   **Set
	}{{"train", &sets.Train}, {"validation", &sets.Validation}, {"test", &sets.Test}, {"harm", &sets.Harm}, {"fit", &sets.Fit}, {"harm-validation", &sets.HarmVal}} {
		n := len(w.Splits[x.split])
		if n == 0 {
			continue
		}
		st, err := Prepare(m, w, x.split, batch, func(done int) {
			if progress != nil {
				progress(x.split, done, n)
			}
		})
		if err != nil {
			return sets, err
		}
		*x.dst = st
	}
	return sets, nil
}

func (cfg Config) logf(format string, a ...any) {
	if cfg.Log != nil {
		fmt.Fprintf(cfg.Log, format, a...)
	}
}

// Run trains and scores every method (and the base model and a fitted
// temperature) and returns the result; Trained holds the first seed's
// adapter of every method, for saving.
//
// (Over 80 lines: the benchmark protocol in order (sets, base and temperature,
// each method by seed and rate), sharing the score closure and the result.)
func Run(e *Evaluator, sets Sets, w *Windows, cfg Config) (*Result, map[string]*Trained, error) {
	t0 := time.Now()
	if cfg.Seeds < 1 || len(cfg.LRs) == 0 {
		return nil, nil, fmt.Errorf("adaptrun: %d seeds and %d learning rates: need at least one of each", cfg.Seeds, len(cfg.LRs))
	}
	if err := cfg.checkGrids(sets); err != nil {
		return nil, nil, err
	}
	res := &Result{T: w.T, Prompt: w.Prompt, Roles: w.Roles, Config: cfg, Methods: cfg.Methods, LRs: cfg.LRs, EpochGrid: cfg.EpochGrid, ClusterGrid: cfg.ClusterGrid, DecayGrid: cfg.DecayGrid, Seeds: cfg.Seeds,
		Opts: cfg.Opts, Primary: cfg.Primary, Bootstrap: cfg.Bootstrap, Windows: map[string]int{},
		TestDomains: sets.Test.Domains, TestDom: sets.Test.Dom}
	for _, x := range sets.Test.Windows {
		res.TestBytes = append(res.TestBytes, x.Bytes)
	}
	for _, s := range []*Set{sets.Train, sets.Validation, sets.Test, sets.Harm, sets.Fit, sets.HarmVal} {
		if s != nil {
			res.Windows[s.Name] = len(s.Windows)
		}
	}
	if sets.Harm != nil {
		res.HarmDomains, res.HarmDom = sets.Harm.Domains, sets.Harm.Dom
		for _, x := range sets.Harm.Windows {
			res.HarmBytes = append(res.HarmBytes, x.Bytes)
		}
	}
	c, v := e.Base.Config.NEmbd, e.Base.Config.VocabSize
	e.Train, e.Fit = sets.Train, sets.Fit
	score := func(t *Trained, grouping string, scale float32, row *Row) error {
		e.lastCheck, e.lastSelect = nil, nil
		s, err := e.Score(t, sets.Test, grouping, scale)
		if err != nil {
			return err
		}
		row.Test = append(row.Test, s)
		if e.lastCheck != nil {
			row.Check = append(row.Check, *e.lastCheck)
		}
		if e.lastSelect != nil {
			row.Selected = append(row.Selected, e.lastSelect)
			if own := ownShare(t, sets.Test, e.lastSelect); own >= 0 {
				row.SelectedOwn = append(row.SelectedOwn, own)
				cfg.logf("%s: %.1f%% of the test windows chose their own domain's expert\n", row.Name, 100*own)
			}
		}
		if sets.Harm != nil && harmApplies(grouping) {
			e.lastCheck = nil
			h, err := e.Score(t, sets.Harm, grouping, scale)
			if err != nil {
				return err
			}
			row.Harm = append(row.Harm, h)
			if e.lastCheck != nil {
				row.HarmCheck = append(row.HarmCheck, *e.lastCheck)
			}
		}
		return nil
	}
	// The base model, and a temperature fitted on validation.
	base := Row{Name: "base model", Grouping: GroupBase, Role: RoleBase}
	vb, err := e.Score(nil, sets.Validation, GroupBase, 1)
	if err != nil {
		return nil, nil, err
	}
	base.Val = vb.Mean(nil)
	if err := score(nil, GroupBase, 1, &base); err != nil {
		return nil, nil, err
	}
	res.Rows = append(res.Rows, base)
	cfg.logf("base model: validation %.4f, test %.4f nats/token\n", base.Val, base.Test[0].Mean(nil))
	scale, val, err := fitScale(func(s float32) (float64, error) {
		sc, err := e.Score(nil, sets.Validation, GroupBase, s)
		return sc.Mean(nil), err
	})
	if err != nil {
		return nil, nil, err
	}
	res.Temperature = 1 / float64(scale)
	temp := Row{Name: fmt.Sprintf("base, temperature %.3f (fitted on validation)", res.Temperature), Grouping: GroupBase,
		Role: RoleBaseline, Params: 1, Bytes: 4, FLOPsPerToken: float64(v), Val: val}
	if err := score(nil, GroupBase, scale, &temp); err != nil {
		return nil, nil, err
	}
	res.Rows = append(res.Rows, temp)
	cfg.logf("temperature %.3f: validation %.4f, test %.4f\n", res.Temperature, val, temp.Test[0].Mean(nil))
	if cfg.Checkpoint != nil {
		cfg.Checkpoint(res)
	}
	firsts := map[string]*Trained{}
	for _, m := range cfg.Methods {
		gs := groupings(m)
		ch, err := e.chooseRate(m, sets, cfg, gs[0])
		if err != nil {
			return nil, nil, err
		}
		best, bestLR, bestVal, lrVal, secs := ch.best, ch.lr, ch.val, ch.vals, ch.secs
		m = ch.m // at the chosen cluster size and gate decay
		firsts[m.Name] = best
		trs := []*Trained{best}
		for s := 2; s <= cfg.Seeds; s++ {
			o := cfg.Opts
			o.LR, o.Seed, o.Epochs = bestLR, uint64(s), ch.epochs
			tr, err := e.train(m, sets.Train, o, func(step, steps int, loss float64) {
				if cfg.Progress != nil {
					cfg.Progress(fmt.Sprintf("%s seed %d", m.Name, s), step, steps, loss)
				}
			})
			if err != nil {
				return nil, nil, err
			}
			trs = append(trs, tr)
		}
		k := len(sets.Train.Domains)
		if best.Cents != nil && m.Kind == KindTable {
			k = best.Cents.K
		}
		params := m.Params(c, v, k)
		if best.NParams > 0 {
			params = best.NParams
		}
		bytes := int64(params) * 4
		if m.Kind == KindHyper && best.Cents != nil {
			bytes += int64(len(best.Cents.Data)) * 4
		}
		type variant struct{ g, gate string }
		var variants []variant
		for _, g := range gs {
			variants = append(variants, variant{g, ""})
		}
		for _, gate := range cfg.SharedGates {
			for _, g := range gs {
				if behindGate(g) {
					variants = append(variants, variant{g, gate})
				}
			}
		}
		for _, x := range variants {
			g := x.g
			e.SharedGate = x.gate
			row := Row{Name: rowName(m, g), Method: m.Name, Kind: m.Kind, Grouping: g, Role: rowRole(m, g),
				Params: params, Bytes: bytes, FLOPsPerToken: addedFLOPs(m, g, e.Base.Config.NLayer, c, v, cfg.Opts.Batch*(w.T-w.Prompt+1)),
				LR: bestLR, LRVal: lrVal, TrainSeconds: secs, Gate: x.gate}
			if len(cfg.EpochGrid) > 1 {
				row.Epochs = ch.epochs
			}
			if len(clusterGrid(m, cfg)) > 1 {
				row.ClusterSize = m.ClusterSize
			}
			if len(decayGrid(m, cfg)) > 1 {
				row.GateDecay = m.GateDecay
			}
			if x.gate != "" {
				row.Name += fmt.Sprintf(", behind the gate every method shares (%s features)", x.gate)
			}
			if checked(g) && len(cfg.CheckSlacks) > 0 {
				if row.CheckSlack, row.SlackVal, err = e.chooseSlack(best, sets, g, cfg.CheckSlacks); err != nil {
					return nil, nil, fmt.Errorf("adaptrun: %s: self-check slack: %w", row.Name, err)
				}
				row.Name += fmt.Sprintf(", slack %g (chosen on validation)", row.CheckSlack)
				e.CheckSlack = row.CheckSlack
			}
			if g == gs[0] && x.gate == "" {
				row.Val = bestVal
			} else {
				e.Seed = 1
				vs, err := e.Score(best, sets.Validation, g, 1)
				if err != nil {
					return nil, nil, fmt.Errorf("adaptrun: %s: validation: %w", row.Name, err)
				}
				row.Val = vs.Mean(nil)
			}
			for si, tr := range trs {
				e.Seed = uint64(si + 1)
				if err := score(tr, g, 1, &row); err != nil {
					return nil, nil, fmt.Errorf("adaptrun: %s: %w", row.Name, err)
				}
			}
			res.Rows = append(res.Rows, row)
			cfg.logf("%s: test %.4f nats/token (seed 1)\n", row.Name, row.Test[0].Mean(nil))
		}
		e.SharedGate, e.CheckSlack, e.selections = "", 0, nil
		for _, tr := range trs[1:] {
			tr.free()
		}
		if cfg.Checkpoint != nil {
			cfg.Checkpoint(res)
		}
	}
	res.Seconds = time.Since(t0).Seconds()
	return res, firsts, nil
}

// train trains m with the path its placement needs.
func (e *Evaluator) train(m Method, d *Set, o TrainOpts, progress func(step, steps int, loss float64)) (*Trained, error) {
	if len(m.Deep) > 0 {
		if e.Deep == nil {
			return nil, fmt.Errorf("adaptrun: %s updates the decoder and the evaluator has no decoder to train it on", m.Name)
		}
		return TrainDeep(e.Deep, e.Base, m, d, o, progress)
	}
	return Train(e.TB, e.Wte, e.Base, m, d, o, progress)
}

// free releases a deep adapter's device tensors.
func (t *Trained) free() {
	if t != nil && t.Deep != nil {
		t.Deep.Free()
		t.Deep = nil
	}
}

// rowName is the table's label of method m under grouping g.
func rowName(m Method, g string) string {
	switch g {
	case GroupStatic:
		return m.Name
	case GroupStaticGated:
		return m.Name + ", gated (as the hyper-network's online rows)"
	case GroupStaticChecked:
		return m.Name + ", gated and self-checked"
	case GroupOracle:
		return m.Name + ", oracle (domain labels)"
	case GroupRouted:
		return m.Name + ", routed to the nearest centroid"
	case GroupSelected:
		return m.Name + ", selected by each window's prompt (no labels)"
	case GroupClustered:
		return m.Name + ", clustered test batches"
	case GroupOnline:
		return m.Name + ", online (nearest training centroid)"
	case GroupUngated:
		return m.Name + ", online without the gate"
	case GroupChecked:
		return m.Name + ", online, gated and self-checked"
	case GroupRandom:
		return m.Name + ", random batches"
	case GroupMean:
		return m.Name + ", control: mean update for all"
	case GroupShuffled:
		return m.Name + ", control: shuffled clusters"
	}
	return m.Name + ", " + g
}

func rowRole(m Method, g string) string {
	switch {
	case g == GroupOracle:
		return RoleOracle
	case g == GroupMean || g == GroupShuffled:
		return RoleControl
	case m.Kind == KindHyper:
		return RoleMethod
	}
	return RoleBaseline
}

// addedFLOPs is the work an adapter adds per scored token: the low-rank
// update, 2R(C+V) (and a hybrid's static pair, 2Rs(C+V)), plus, for a
// hyper-network, its forward once per cluster spread over a batch of
// tokens.
func addedFLOPs(m Method, g string, layers, c, v, tokensPerCluster int) float64 {
	if g == GroupMean {
		return float64(2 * c * v) // the mean update has full rank
	}
	f := float64(2 * (m.Rank + m.StaticRank) * (c + v))
	var h float64 // the hyper-network's forward, once per cluster
	if m.Kind == KindHyper {
		d := m.hyperConfig(c, v, 1).Dims()
		for i := 0; i+1 < len(d)-1; i++ {
			h += float64(2 * d[i] * d[i+1])
		}
		h += float64(2 * d[len(d)-2] * d[len(d)-1])
	}
	if len(m.Deep) > 0 {
		f, h = 0, 0
		if m.Kind == KindHyper {
			d := m.hyperConfig(c, v, 1).Dims()
			for i := 0; i+1 < len(d)-1; i++ {
				h += float64(2 * d[i] * d[i+1])
			}
		}
		for _, s := range deepSites(m, layers) {
			in, out, _ := model.Config{NEmbd: c, VocabSize: v}.SiteShape(s.Name)
			f += float64(2 * m.Rank * (in + out))
			if m.Kind == KindHyper && (!m.DeepStatic || s.Name == "head") {
				h += float64(2 * m.Hidden[len(m.Hidden)-1] * m.Rank * (in + out))
			}
		}
	}
	return f + h/float64(max(tokensPerCluster, 1))
}

// fitScale minimises loss(scale) over scale in [0.5, 2] by golden-section
// search (the loss of a softmax temperature is unimodal in practice).
func fitScale(loss func(float32) (float64, error)) (float32, float64, error) {
	lo, hi := 0.5, 2.0
	g := (math.Sqrt(5) - 1) / 2
	a, b := hi-g*(hi-lo), lo+g*(hi-lo)
	fa, err := loss(float32(a))
	if err != nil {
		return 0, 0, err
	}
	fb, err := loss(float32(b))
	if err != nil {
		return 0, 0, err
	}
	for range 14 {
		if fa < fb {
			hi, b, fb = b, a, fa
			a = hi - g*(hi-lo)
			if fa, err = loss(float32(a)); err != nil {
				return 0, 0, err
			}
		} else {
			lo, a, fa = a, b, fb
			b = lo + g*(hi-lo)
			if fb, err = loss(float32(b)); err != nil {
				return 0, 0, err
			}
		}
	}
	if fa < fb {
		return float32(a), fa, nil
	}
	return float32(b), fb, nil
}
