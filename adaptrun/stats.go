package adaptrun

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Interval is a mean difference in loss per token (nats) with a 95%
// bootstrap interval.
type Interval struct {
	Mean float64 `json:"mean"`
	Lo   float64 `json:"lo"`
	Hi   float64 `json:"hi"`
}

// ExcludesZero says whether the interval lies wholly on one side of zero.
func (iv Interval) ExcludesZero() bool { return iv.Lo > 0 || iv.Hi < 0 }

// PairedBootstrap compares a with b on the same windows: the statistic is
// (Σ a.Loss - Σ b.Loss) / Σ a.N over a resample of windows drawn with
// replacement, iters times (seeded); the interval is its 2.5th and 97.5th
// percentiles. Both must score the same windows with the same counts.
func PairedBootstrap(a, b Scores, iters int, seed uint64) Interval {
	n := len(a.Loss)
	if n != len(b.Loss) || n == 0 {
		panic("adaptrun: PairedBootstrap: scores of different windows")
	}
	diff := make([]float64, n)
	var sd, sn float64
	for i := range n {
		diff[i] = a.Loss[i] - b.Loss[i]
		sd += diff[i]
		sn += float64(a.N[i])
	}
	iv := Interval{Mean: sd / sn}
	if iters < 1 {
		iv.Lo, iv.Hi = iv.Mean, iv.Mean
		return iv
	}
	rng := rand.New(rand.NewPCG(seed, 0xb007))
	stats := make([]float64, iters)
	for it := range stats {
		var d, c float64
		for range n {
			j := rng.IntN(n)
			d += diff[j]
			c += float64(a.N[j])
		}
		stats[it] = d / math.Max(c, 1)
	}
	iv.Lo, iv.Hi = percentiles95(stats)
	return iv
}

// MedianInterval is the median of xs (in Interval.Mean) with a 95%
// bootstrap interval: the 2.5th and 97.5th percentiles of the medians of
// iters resamples of xs drawn with replacement (seeded). xs must not be
// empty.
func MedianInterval(xs []float64, iters int, seed uint64) Interval {
	if len(xs) == 0 {
		panic("adaptrun: MedianInterval of nothing")
	}
	iv := Interval{Mean: median(xs)}
	iv.Lo, iv.Hi = iv.Mean, iv.Mean
	if iters < 1 {
		return iv
	}
	rng := rand.New(rand.NewPCG(seed, 0x3ed1))
	stats, re := make([]float64, iters), make([]float64, len(xs))
	for it := range stats {
		for i := range re {
			re[i] = xs[rng.IntN(len(xs))]
		}
		stats[it] = median(re)
	}
	iv.Lo, iv.Hi = percentiles95(stats)
	return iv
}

// percentiles95 sorts stats and returns its 2.5th and 97.5th percentiles.
func percentiles95(stats []float64) (lo, hi float64) {
	slices.Sort(stats)
	n := float64(len(stats) - 1)
	return stats[int(0.025*n)], stats[int(math.Ceil(0.975*n))]
}

// pooled averages a row's per-window losses over its seeds.
func pooled(ss []Scores) Scores {
	out := Scores{Loss: make([]float64, len(ss[0].Loss)), N: ss[0].N}
	for _, s := range ss {
		for i, l := range s.Loss {
			out.Loss[i] += l / float64(len(ss))
		}
	}
	return out
}

// concatScores is a's windows followed by b's.
func concatScores(a, b Scores) Scores {
	return Scores{Loss: append(slices.Clone(a.Loss), b.Loss...), N: append(slices.Clone(a.N), b.N...)}
}
