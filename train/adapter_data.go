package train

import (
	"fmt"
	"math/rand/v2"

	"github.com/chameleon-llm/chameleon/data"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Window is one input of adapter training and evaluation: T tokens of one
// domain and the T tokens that follow each (next-token targets).
type Window struct {
	Tokens, Targets []int32
	Domain          int // index into the domain list; for evaluation and the experts oracle only
}

// DomainWindows cuts each domain's split (its documents in corpus order,
// each followed by <|endoftext|>) into consecutive windows of t tokens
// (t+1 with the targets), and keeps at most perDomain of them per domain,
// chosen by a seeded shuffle, so that every domain weighs the same. It
// returns the windows (domains in corpus order, shuffled within) and the
// domain names.
func DomainWindows(c *data.Corpus, split string, tok *model.Tokenizer, t, perDomain int, seed uint64) ([]Window, []string, error) {
	if t < 1 || perDomain < 1 {
		return nil, nil, fmt.Errorf("train: windows of %d tokens, %d per domain", t, perDomain)
	}
	domains := c.Domains()
	var out []Window
	for di, dom := range domains {
		var stream []int32
		for d, err := range c.All(dom, split) {
			if err != nil {
				return nil, nil, err
			}
			stream = append(tok.AppendEncode(stream, d.Text), tok.EOT())
		}
		var ws []Window
		for o := 0; o+t+1 <= len(stream); o += t {
			ws = append(ws, Window{Tokens: stream[o : o+t], Targets: stream[o+1 : o+t+1], Domain: di})
		}
		if len(ws) == 0 {
			return nil, nil, fmt.Errorf("train: domain %s has no %s window of %d tokens", dom, split, t)
		}
		rng := rand.New(rand.NewPCG(seed, uint64(di)))
		rng.Shuffle(len(ws), func(i, j int) { ws[i], ws[j] = ws[j], ws[i] })
		out = append(out, ws[:min(perDomain, len(ws))]...)
	}
	return out, domains, nil
}

// HiddenStates runs the frozen base model over every window once and
// returns each window's final hidden states (after ln_f), t*C values per
// window, on the host: adapters change only the output projection, so
// training and evaluating them needs nothing else of the decoder, and
// computing it once saves every later step the decoder's forward.
// progress, if set, is called with windows done.
func HiddenStates(m *model.Model, ws []Window, batch int, progress func(done int)) ([][]float32, error) {
	out := make([][]float32, len(ws))
	for b0 := 0; b0 < len(ws); b0 += batch {
		n := min(batch, len(ws)-b0)
		toks := make([][]int32, n)
		tmax := 0
		for i := range toks {
			toks[i] = ws[b0+i].Tokens
			tmax = max(tmax, len(toks[i]))
		}
		cache, err := m.NewCache(n, tmax)
		if err != nil {
			return nil, err
		}
		var hs []float32
		head := func(dst, h gpu.Tensor, _ []int32) error {
			var err error
			hs, err = m.B.ReadF32(h)
			return err
		}
		logits, err := m.ForwardHead(cache, toks, false, head)
		m.FreeCache(cache)
		if err != nil {
			return nil, err
		}
		m.B.Free(logits)
		c := m.Cfg.NEmbd
		for i := 0; i < n; i++ {
			out[b0+i] = hs[i*tmax*c : (i*tmax+len(toks[i]))*c]
		}
		if progress != nil {
			progress(b0 + n)
		}
	}
	return out, nil
}
