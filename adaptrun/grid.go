package adaptrun

import (
	"fmt"
	"math"
	"time"
)

// choice is a method's first-seed training at the rate and epochs its
// validation loss chose.
type choice struct {
	best   *Trained
	m      Method // the method trained: at the chosen cluster size
	lr     float64
	epochs int
	val    float64
	vals   map[string]float64 // GridKey -> validation loss
	secs   float64            // the chosen training's seconds
}

// GridKey names a point of the grid in Row.LRVal: the rate alone when the
// epochs are not part of the grid, else "RATE@EPOCHS".
func GridKey(lr float64, epochs int, grid []int) string {
	if len(grid) > 1 {
		return fmt.Sprintf("%g@%d", lr, epochs)
	}
	return fmt.Sprint(lr)
}

// ClusterKey is GridKey's key extended by the cluster size when the
// cluster sizes are part of the grid (Config.ClusterGrid): "KEY/cSIZE".
func ClusterKey(key string, size int, grid []int) string {
	if len(grid) > 1 {
		return fmt.Sprintf("%s/c%d", key, size)
	}
	return key
}

// DecayKey is ClusterKey's key extended by the gate decay when the gate
// decays are part of the grid (Config.DecayGrid): "KEY/dDECAY".
func DecayKey(key string, decay float64, grid []float64) string {
	if len(grid) > 1 {
		return fmt.Sprintf("%s/d%g", key, decay)
	}
	return key
}

// decayGrid is the gate decays m is trained at: cfg.DecayGrid for a gated
// basis when it has several, else m's own.
func decayGrid(m Method, cfg Config) []float64 {
	if m.Basis && len(cfg.DecayGrid) > 1 {
		return cfg.DecayGrid
	}
	return []float64{m.GateDecay}
}

// clusterGrid is the cluster sizes m is trained at: cfg.ClusterGrid for a
// method trained on clusters (hyper) when it has several, else m's own.
func clusterGrid(m Method, cfg Config) []int {
	if m.Kind == KindHyper && len(cfg.ClusterGrid) > 1 {
		return cfg.ClusterGrid
	}
	return []int{m.ClusterSize}
}

// chooseRate trains m at the first seed at every rate of cfg.LRs (and
// every epochs of cfg.EpochGrid, for a hyper method every cluster size of
// cfg.ClusterGrid and for a gated basis every gate decay of
// cfg.DecayGrid) and keeps the one with the lowest validation
// loss under grouping g; ties keep the earlier.
func (e *Evaluator) chooseRate(m Method, sets Sets, cfg Config, g string) (choice, error) {
	eps := cfg.EpochGrid
	if len(eps) == 0 {
		eps = []int{cfg.Opts.Epochs}
	}
	css, ds := clusterGrid(m, cfg), decayGrid(m, cfg)
	c := choice{vals: map[string]float64{}, val: math.Inf(1), m: m}
	for _, cs := range css {
		for _, d := range ds {
			mc := m
			mc.ClusterSize, mc.GateDecay = cs, d
			if err := e.choosePoints(&c, mc, sets, cfg, g, eps, css, ds); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

// choosePoints trains mc (one cluster size and gate decay) at every
// epochs of eps and rate of cfg.LRs and keeps in c the one with the lowest
// validation loss under grouping g.
func (e *Evaluator) choosePoints(c *choice, mc Method, sets Sets, cfg Config, g string, eps, css []int, ds []float64) error {
	for _, ep := range eps {
		for _, lr := range cfg.LRs {
			o := cfg.Opts
			o.LR, o.Seed, o.Epochs = lr, 1, ep
			what := fmt.Sprintf("%s lr %g", mc.Name, lr)
			if len(eps) > 1 {
				what += fmt.Sprintf(", %d epochs", ep)
			}
			if len(css) > 1 {
				what += fmt.Sprintf(", clusters of %d", mc.ClusterSize)
			}
			if len(ds) > 1 {
				what += fmt.Sprintf(", gate decay %g", mc.GateDecay)
			}
			t1 := time.Now()
			tr, err := e.train(mc, sets.Train, o, func(step, steps int, loss float64) {
				if cfg.Progress != nil {
					cfg.Progress(what, step, steps, loss)
				}
			})
			if err != nil {
				c.best.free()
				return err
			}
			secs := time.Since(t1).Seconds()
			e.Seed = o.Seed
			vs, err := e.Score(tr, sets.Validation, g, 1)
			if err != nil {
				tr.free()
				c.best.free()
				return err
			}
			l := vs.Mean(nil)
			c.vals[DecayKey(ClusterKey(GridKey(lr, ep, eps), mc.ClusterSize, css), mc.GateDecay, ds)] = l
			cfg.logf("%s: validation %.4f (%s)\n", what, l, g)
			if l < c.val {
				c.best.free()
				c.best, c.m, c.lr, c.epochs, c.val, c.secs = tr, mc, lr, ep, l, secs
			} else {
				tr.free()
			}
		}
	}
	return nil
}

// chooseSlack scores t under the self-checked grouping g at every slack of
// slacks on the mixed validation stream (the adaptation domains'
// validation windows and the pretraining domains', tokens pooled; first
// seed) and returns the slack of least loss (ties keep the earlier) and
// every slack's loss. A window's update does not depend on its batch, so
// each set is scored once (gated and the self-check's prompt differences;
// the base model once per set for every row) and every slack replayed
// from those losses: a window keeps its gated loss where its prompt's
// loss rose by less than the slack a token, else the base model's, as
// Score under g at that slack does (TestCheckSlack checks every slack
// against it). It leaves e.CheckSlack at 0.
func (e *Evaluator) chooseSlack(t *Trained, sets Sets, g string, slacks []float64) (float64, map[string]float64, error) {
	open := uncheckedOf(g)
	if open == "" {
		return 0, nil, fmt.Errorf("adaptrun: grouping %s has no gated grouping to replay a slack from", g)
	}
	e.CheckSlack, e.Seed = 0, 1
	loss := make([]float64, len(slacks))
	n := 0
	for _, s := range []*Set{sets.Validation, sets.HarmVal} {
		base, err := e.baseScores(s)
		if err != nil {
			return 0, nil, err
		}
		gated, err := e.Score(t, s, open, 1)
		if err != nil {
			return 0, nil, err
		}
		d, err := e.checkDiffs(t, s, g)
		if err != nil {
			return 0, nil, err
		}
		for k, sl := range slacks {
			for i := range gated.Loss {
				if d.Loss[i] < sl*float64(d.N[i]) {
					loss[k] += gated.Loss[i]
				} else {
					loss[k] += base.Loss[i]
				}
			}
		}
		for _, c := range gated.N {
			n += c
		}
	}
	vals := map[string]float64{}
	best, bestLoss := 0.0, math.Inf(1)
	for k, sl := range slacks {
		l := loss[k] / float64(max(n, 1))
		vals[fmt.Sprint(sl)] = l
		if l < bestLoss {
			best, bestLoss = sl, l
		}
	}
	return best, vals, nil
}

// checkGrids refuses grids with values no training can take, and a
// choice of the self-check's slack without the windows it is made on.
func (cfg Config) checkGrids(sets Sets) error {
	for _, ep := range cfg.EpochGrid {
		if ep < 1 {
			return fmt.Errorf("adaptrun: epochs grid %v: want positive values", cfg.EpochGrid)
		}
	}
	for _, cs := range cfg.ClusterGrid {
		if cs < 1 {
			return fmt.Errorf("adaptrun: cluster sizes %v: want positive values", cfg.ClusterGrid)
		}
	}
	for _, d := range cfg.DecayGrid {
		if !(d >= 0) || math.IsInf(d, 0) {
			return fmt.Errorf("adaptrun: gate decays %v: want finite values >= 0", cfg.DecayGrid)
		}
	}
	for _, sl := range cfg.CheckSlacks {
		if math.IsNaN(sl) || math.IsInf(sl, 0) {
			return fmt.Errorf("adaptrun: self-check slacks %v: want finite values", cfg.CheckSlacks)
		}
	}
	if len(cfg.CheckSlacks) > 0 && (sets.HarmVal == nil || len(sets.HarmVal.Windows) == 0) {
		return fmt.Errorf("adaptrun: choosing the self-check's slack needs the pretraining domains' validation windows (harm-validation)")
	}
	return nil
}
