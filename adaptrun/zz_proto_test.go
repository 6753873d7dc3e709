package adaptrun

import (
	"bytes"
	"compress/gzip"
	"encoding/gob"
	"fmt"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"math"
	"os"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

type protoDump struct {
	Splits map[string]*Served
	Hidden map[string][][]float32
	Prompt int
	C      int
}

// TestProtoDump scores the benchmark windows through the served path and
// keeps each window's final hidden states (scratch experiment).
func TestProtoDump(t *testing.T) {
	out := os.Getenv("PROTO_DUMP")
	if out == "" {
		t.Skip("PROTO_DUMP unset")
	}
	b := gputest.Backend(t)
	fsys, err := defaults.Model()
	if err != nil {
		t.Fatal(err)
	}
	cfg, host, err := model.LoadHFFSWith(fsys, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base, err := adapt.BaseOf(cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	w8, err := model.Upload(b, cfg, host, gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	m := &model.Model{Cfg: cfg, W: w8, B: b}
	hb, err := defaults.Hyper()
	if err != nil {
		t.Fatal(err)
	}
	a, err := adapt.Read(bytes.NewReader(hb), int64(len(hb)), base)
	if err != nil {
		t.Fatal(err)
	}
	w, err := LoadWindows(os.Getenv("PROTO_WINDOWS"))
	if err != nil {
		t.Fatal(err)
	}
	d := protoDump{Splits: map[string]*Served{}, Hidden: map[string][][]float32{}, Prompt: w.Prompt, C: cfg.NEmbd}
	for _, split := range []string{"validation", "test", "harm"} {
		sv, err := ScoreServed(m, a, split, w.Splits[split], w.Prompt, 16, nil)
		if err != nil {
			t.Fatal(err)
		}
		var seqs [][]int32
		for _, x := range w.Splits[split] {
			seqs = append(seqs, x.Tokens)
		}
		hs, err := hiddenStates(m, seqs, 16, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.Splits[split], d.Hidden[split] = sv, hs
		t.Logf("%s: %d windows", split, len(hs))
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z := gzip.NewWriter(f)
	defer z.Close()
	type flat struct {
		Domains             map[string][]string
		BaseTok, AdaptedTok map[string][][]float32
		Tokens              map[string][][]int32
		Features            map[string][][]float32
		Kept                map[string][]bool
		Cluster             map[string][]int
		Hidden              map[string][][]float32
		Prompt, C           int
	}
	fl := flat{Domains: map[string][]string{}, BaseTok: map[string][][]float32{}, AdaptedTok: map[string][][]float32{},
		Tokens: map[string][][]int32{}, Features: map[string][][]float32{}, Kept: map[string][]bool{}, Cluster: map[string][]int{},
		Hidden: d.Hidden, Prompt: d.Prompt, C: d.C}
	for k, s := range d.Splits {
		fl.Domains[k], fl.BaseTok[k], fl.AdaptedTok[k], fl.Tokens[k] = s.Domains, s.BaseTok, s.AdaptedTok, s.Tokens
		fl.Features[k], fl.Kept[k], fl.Cluster[k] = s.Features, s.Kept, s.Cluster
	}
	if err := gob.NewEncoder(z).Encode(fl); err != nil {
		t.Fatal(err)
	}
}

type protoFlat struct {
	Domains             map[string][]string
	BaseTok, AdaptedTok map[string][][]float32
	Tokens              map[string][][]int32
	Features            map[string][][]float32
	Kept                map[string][]bool
	Cluster             map[string][]int
	Hidden              map[string][][]float32
	Prompt, C           int
}

var protoThetas = []float64{5, 10, 20, 40}

// protoTerms: per position j (predicting tok[j+1]): model prob, unigram
// own/pool, neural own/pool per theta.
type protoTerms struct {
	p, uo, up []float64
	no, np    [][]float64 // [theta][j]
}

func unitRows(h []float32, c int) []float32 {
	out := make([]float32, len(h))
	for r := 0; r < len(h)/c; r++ {
		var ss float64
		for _, v := range h[r*c : (r+1)*c] {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(ss+1e-12))
		for k := range c {
			out[r*c+k] = h[r*c+k] * inv
		}
	}
	return out
}

// protoGroupTerms computes the terms of every member of group g. pool
// keys: the other members' prompt positions 0..P-2. forChoice: pool of
// unigram excludes the member itself (leave-one-out); else includes it.
func protoGroupTerms(g []int, toks [][]int32, lps [][]float32, hid [][]float32, P, C int, prior []float64, beta float64, forChoice bool) []protoTerms {
	out := make([]protoTerms, len(g))
	var all adapt.TokenCounts
	for _, i := range g {
		all.Add(toks[i][:P]...)
	}
	cfg := adapt.CacheConfig{Prior: prior, Beta: beta}
	for gi, i := range g {
		L := len(lps[i])
		tm := protoTerms{p: make([]float64, L), uo: make([]float64, L), up: make([]float64, L)}
		pool := &all
		if forChoice {
			pool = all.Clone()
			pool.Remove(toks[i][:P]...)
		}
		var own adapt.TokenCounts
		for j := 0; j < L; j++ {
			own.Add(toks[i][j])
			y := toks[i][j+1]
			tm.p[j] = math.Exp(-float64(lps[i][j]))
			tm.uo[j] = own.Prob(y, cfg)
			if pool.Total > 0 {
				tm.up[j] = pool.Prob(y, cfg)
			} else {
				tm.up[j] = tm.p[j]
			}
		}
		// neural keys
		q := hid[i][:L*C]
		var kp []float32
		var vp []int32
		for _, o := range g {
			if o == i {
				continue
			}
			kp = append(kp, hid[o][:(P-1)*C]...)
			vp = append(vp, toks[o][1:P]...)
		}
		npk := len(vp)
		gown := make([]float32, L*L)
		blas32.Gemm(blas.NoTrans, blas.Trans, 1, blas32.General{Rows: L, Cols: C, Stride: C, Data: q},
			blas32.General{Rows: L, Cols: C, Stride: C, Data: q}, 0, blas32.General{Rows: L, Cols: L, Stride: L, Data: gown})
		var gpool []float32
		if npk > 0 {
			gpool = make([]float32, L*npk)
			blas32.Gemm(blas.NoTrans, blas.Trans, 1, blas32.General{Rows: L, Cols: C, Stride: C, Data: q},
				blas32.General{Rows: npk, Cols: C, Stride: C, Data: kp}, 0, blas32.General{Rows: L, Cols: npk, Stride: npk, Data: gpool})
		}
		tm.no = make([][]float64, len(protoThetas))
		tm.np = make([][]float64, len(protoThetas))
		for ti, th := range protoThetas {
			tm.no[ti] = make([]float64, L)
			tm.np[ti] = make([]float64, L)
			for j := 0; j < L; j++ {
				y := toks[i][j+1]
				if j == 0 {
					tm.no[ti][j] = tm.p[j]
				} else {
					var num, den float64
					for jj := 0; jj < j; jj++ {
						e := math.Exp(th * (float64(gown[j*L+jj]) - 1))
						den += e
						if toks[i][jj+1] == y {
							num += e
						}
					}
					tm.no[ti][j] = num / den
				}
				if npk == 0 {
					tm.np[ti][j] = tm.p[j]
				} else {
					var num, den float64
					row := gpool[j*npk : (j+1)*npk]
					for k, c := range row {
						e := math.Exp(th * (float64(c) - 1))
						den += e
						if vp[k] == y {
							num += e
						}
					}
					tm.np[ti][j] = num / den
				}
			}
		}
		out[gi] = tm
	}
	return out
}

// protoWeights: a = uni own, b = uni pool, c = neural own, d = neural pool, theta index.
type protoWeights struct {
	a, b, c, d float64
	th         int
}

func (w protoWeights) loss(t protoTerms, from, to int) float64 {
	s := 0.0
	for j := from; j < to; j++ {
		p := (1-w.a-w.b-w.c-w.d)*t.p[j] + w.a*t.uo[j] + w.b*t.up[j] + w.c*t.no[w.th][j] + w.d*t.np[w.th][j]
		s -= math.Log(p)
	}
	return s
}

// protoChoose picks the weights minimising the members' prompt loss,
// allowed[k] says whether component k may be nonzero.
func protoChoose(ts []protoTerms, P int, allowed [4]bool) protoWeights {
	grid := adapt.DefaultCacheGrid
	best, bl := protoWeights{}, math.Inf(1)
	gs := func(k int) []float64 {
		if allowed[k] {
			return grid
		}
		return []float64{0}
	}
	for th := range protoThetas {
		if !allowed[2] && !allowed[3] && th > 0 {
			break
		}
		for _, a := range gs(0) {
			for _, b := range gs(1) {
				for _, c := range gs(2) {
					for _, d := range gs(3) {
						if a+b+c+d > 0.8 {
							continue
						}
						w := protoWeights{a, b, c, d, th}
						s := 0.0
						for _, t := range ts {
							s += w.loss(t, 0, P-1)
						}
						if s < bl {
							best, bl = w, s
						}
					}
				}
			}
		}
	}
	return best
}

func TestProtoNeural(t *testing.T) {
	in := os.Getenv("PROTO_DUMP")
	if in == "" {
		t.Skip("PROTO_DUMP unset")
	}
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var fl protoFlat
	if err := gob.NewDecoder(z).Decode(&fl); err != nil {
		t.Fatal(err)
	}
	P, C := fl.Prompt, fl.C
	mk := func(split string) (*Served, [][]float32) {
		s := &Served{Split: split, Domains: fl.Domains[split], BaseTok: fl.BaseTok[split], AdaptedTok: fl.AdaptedTok[split],
			Tokens: fl.Tokens[split], Features: fl.Features[split], Kept: fl.Kept[split], Cluster: fl.Cluster[split], Prompt: P}
		var hs [][]float32
		for _, h := range fl.Hidden[split] {
			hs = append(hs, unitRows(h, C))
		}
		return s, hs
	}
	val, hval := mk("validation")
	test, htest := mk("test")
	harm, hharm := mk("harm")
	mixed := concatServed(test, harm)
	hmixed := append(append([][]float32{}, htest...), hharm...)
	prior := make([]float64, 1<<16)
	vocab := 0
	for _, s := range []*Served{val, test, harm} {
		for _, tk := range s.Tokens {
			for _, x := range tk {
				vocab = max(vocab, int(x)+1)
			}
		}
	}
	_ = vocab
	// uniform prior over the model's vocabulary: take it from the max token id seen, rounded up
	vsz := 4096
	if v := os.Getenv("PROTO_VOCAB"); v != "" {
		fmt.Sscan(v, &vsz)
	}
	prior = prior[:vsz]
	for i := range prior {
		prior[i] = 1 / float64(vsz)
	}
	beta := 4.0
	type variant struct {
		name    string
		groups  string
		allowed [4]bool
		adapted bool
	}
	variants := []variant{
		{"uni own", "single", [4]bool{true, false, false, false}, false},
		{"uni own+cluster", "cluster", [4]bool{true, true, false, false}, false},
		{"neural own", "single", [4]bool{false, false, true, false}, false},
		{"neural own+cluster", "cluster", [4]bool{false, false, true, true}, false},
		{"uni+neural own", "single", [4]bool{true, false, true, false}, false},
		{"uni+neural own+cluster", "cluster", [4]bool{true, true, true, true}, false},
		{"uni+neural own+random", "random", [4]bool{true, true, true, true}, false},
		{"adapter: uni own+cluster", "cluster", [4]bool{true, true, false, false}, true},
		{"adapter: uni+neural own", "single", [4]bool{true, false, true, false}, true},
		{"adapter: uni+neural own+cluster", "cluster", [4]bool{true, true, true, true}, true},
	}
	for _, st := range []struct {
		s *Served
		h [][]float32
	}{{val, hval}, {mixed, hmixed}} {
		s := st.s
		res := map[string]Scores{}
		for _, v := range variants {
			lps := s.BaseTok
			if v.adapted {
				lps = s.AdaptedTok
			}
			groups, _, err := cacheGroups(s, v.groups, CacheOpts{Batch: 16, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			sc := Scores{Loss: make([]float64, len(s.Tokens)), N: make([]int, len(s.Tokens))}
			var wsum protoWeights
			for _, g := range groups {
				ch := protoGroupTerms(g, s.Tokens, lps, st.h, P, C, prior, beta, true)
				w := protoChoose(ch, P, v.allowed)
				wsum.a, wsum.b, wsum.c, wsum.d = wsum.a+w.a*float64(len(g)), wsum.b+w.b*float64(len(g)), wsum.c+w.c*float64(len(g)), wsum.d+w.d*float64(len(g))
				sc2 := protoGroupTerms(g, s.Tokens, lps, st.h, P, C, prior, beta, false)
				for gi, i := range g {
					L := len(lps[i])
					sc.Loss[i] = w.loss(sc2[gi], P-1, L)
					sc.N[i] = L - (P - 1)
				}
			}
			res[v.name] = sc
			n := float64(len(s.Tokens))
			base := s.Base
			if base.Loss == nil {
				base = Scores{Loss: make([]float64, len(s.Tokens)), N: sc.N}
				for i, l := range s.BaseTok {
					for j := P - 1; j < len(l); j++ {
						base.Loss[i] += float64(l[j])
					}
				}
			}
			d := PairedBootstrap(sc, base, 500, 2)
			t.Logf("%s %-36s vs base %+.4f [%+.4f, %+.4f]  weights a %.3f b %.3f c %.3f d %.3f", s.Split, v.name, d.Mean, d.Lo, d.Hi,
				wsum.a/n, wsum.b/n, wsum.c/n, wsum.d/n)
		}
		for _, pr := range [][2]string{{"uni+neural own+cluster", "uni own+cluster"}, {"neural own+cluster", "uni own+cluster"},
			{"uni+neural own+cluster", "uni+neural own"}, {"uni+neural own+cluster", "uni+neural own+random"},
			{"adapter: uni+neural own+cluster", "adapter: uni own+cluster"}, {"adapter: uni+neural own+cluster", "adapter: uni+neural own"}} {
			d := PairedBootstrap(res[pr[0]], res[pr[1]], 500, 2)
			t.Logf("%s %s minus %s: %+.4f [%+.4f, %+.4f]", s.Split, pr[0], pr[1], d.Mean, d.Lo, d.Hi)
		}
	}
}

func TestProtoCheckNeural(t *testing.T) {
	in := os.Getenv("PROTO_DUMP")
	if in == "" {
		t.Skip("PROTO_DUMP unset")
	}
	f, _ := os.Open(in)
	z, _ := gzip.NewReader(f)
	var fl protoFlat
	if err := gob.NewDecoder(z).Decode(&fl); err != nil {
		t.Fatal(err)
	}
	s := &Served{Split: "validation", Domains: fl.Domains["validation"], BaseTok: fl.BaseTok["validation"], AdaptedTok: fl.AdaptedTok["validation"],
		Tokens: fl.Tokens["validation"], Features: fl.Features["validation"], Prompt: fl.Prompt}
	for _, h := range fl.Hidden["validation"] {
		u := adapt.UnitRows(h[:(len(h)/fl.C-1)*fl.C], fl.C)
		s.BaseHidden, s.AdaptedHidden = append(s.BaseHidden, u), append(s.AdaptedHidden, u)
	}
	for i := range s.Tokens {
		s.Base = appendScored(s.Base, s.BaseTok[i], s.Prompt)
	}
	cfg := adapt.UniformCache(4096)
	for _, vi := range []int{12, 13, 18} {
		sc, _, err := scoreCache(s, cacheVariants[vi], cfg, CacheOpts{Batch: 16, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		d := PairedBootstrap(sc, s.Base, 200, 1)
		t.Logf("%s: %+.4f", cacheVariants[vi].name, d.Mean)
	}
}
