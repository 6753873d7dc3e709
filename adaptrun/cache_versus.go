package adaptrun

import (
	"fmt"
	"io"
	"slices"
)

// CacheVersus compares the rows of one cache evaluation with the rows of
// the same name in another run over the same windows (another adapter,
// say): this run's loss minus the other's, nats/token, paired bootstrap
// over windows.
type CacheVersus struct {
	Label   string         `json:"label"` // what the other run was
	Streams []VersusStream `json:"streams"`
}

// VersusStream is one stream's comparisons.
type VersusStream struct {
	Name string      `json:"name"`
	Rows []VersusRow `json:"rows"`
}

// VersusRow is one row's comparison: Diff is this run minus the other.
type VersusRow struct {
	Name  string   `json:"name"`
	This  float64  `json:"this"`  // nats/token against the base model, this run
	Other float64  `json:"other"` // the same, the other run
	Diff  Interval `json:"diff"`
}

// LoadCacheResult reads a result WriteJSON wrote; rows written with
// CacheOpts.KeepScores get their per-window losses back for Versus.
func LoadCacheResult(path string) (*CacheResult, error) {
	var r CacheResult
	if err := readGzipJSON(path, &r); err != nil {
		return nil, err
	}
	for i := range r.Streams {
		for j := range r.Streams[i].Rows {
			if x := &r.Streams[i].Rows[j]; x.PerWindow != nil {
				x.scores = *x.PerWindow
			}
		}
	}
	return &r, nil
}

// Versus sets r.Against: for every stream and row name in both r and
// other, r's loss minus other's with a paired bootstrap interval of iters
// resamples. Both must have kept their scores and scored the same windows
// (the same scored tokens per window); it fails otherwise, and when no row
// is in both.
func (r *CacheResult) Versus(other *CacheResult, label string, iters int) error {
	v := &CacheVersus{Label: label}
	n := 0
	for _, st := range r.Streams {
		oi := slices.IndexFunc(other.Streams, func(o CacheStream) bool { return o.Name == st.Name })
		if oi < 0 {
			continue
		}
		ost := other.Streams[oi]
		if ost.Windows != st.Windows {
			return fmt.Errorf("adaptrun: versus %s: stream %s has %d windows there, %d here", label, st.Name, ost.Windows, st.Windows)
		}
		vs := VersusStream{Name: st.Name}
		for _, x := range st.Rows {
			oj := slices.IndexFunc(ost.Rows, func(o CacheRow) bool { return o.Name == x.Name })
			if oj < 0 {
				continue
			}
			y := ost.Rows[oj]
			if len(x.scores.Loss) != st.Windows || len(y.scores.Loss) != st.Windows {
				return fmt.Errorf("adaptrun: versus %s: row %q of %s has no per-window losses in one of the runs (CacheOpts.KeepScores)", label, x.Name, st.Name)
			}
			if !slices.Equal(x.scores.N, y.scores.N) {
				return fmt.Errorf("adaptrun: versus %s: row %q of %s scored other tokens there: not the same windows", label, x.Name, st.Name)
			}
			vs.Rows = append(vs.Rows, VersusRow{Name: x.Name, This: x.Diff.Mean, Other: y.Diff.Mean,
				Diff: PairedBootstrap(x.scores, y.scores, iters, 3)})
			n++
		}
		v.Streams = append(v.Streams, vs)
	}
	if n == 0 {
		return fmt.Errorf("adaptrun: versus %s: no row of the same name and stream in both runs", label)
	}
	r.Against = v
	return nil
}

// markdownVersus writes r.Against's tables.
func (r *CacheResult) markdownVersus(w io.Writer) {
	if r.Against == nil {
		return
	}
	for _, st := range r.Against.Streams {
		fmt.Fprintf(w, "\nAgainst %s, **%s** (this run minus that one, nats/token, paired over windows):\n\n", r.Against.Label, st.Name)
		fmt.Fprintln(w, "| row | this run vs base | that run vs base | this minus that [95%] |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, x := range st.Rows {
			fmt.Fprintf(w, "| %s | %+.4f | %+.4f | %+.4f [%+.4f, %+.4f] |\n", x.Name, x.This, x.Other, x.Diff.Mean, x.Diff.Lo, x.Diff.Hi)
		}
	}
}
