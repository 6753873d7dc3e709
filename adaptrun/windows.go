package adaptrun

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"

	"github.com/chameleon-llm/chameleon/data"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// Domain roles in the benchmark.
const (
	RolePretrain = "pretrain" // the base model trained on these; scored for harm only
	RoleAdapt    = "adapt"    // adapters train, are tuned and tested on these
	RoleHeldOut  = "heldout"  // used by no training at all; scored for harm only
)

// Sizes is how many windows the benchmark takes per domain and split.
type Sizes struct {
	Train, Validation, Test int // per adaptation domain
	Harm                    int // test windows per pretraining and held-out domain
	Fit                     int // training windows per pretraining domain (the gate's picture of the pretraining inputs)
	// HarmVal is validation windows per pretraining domain: with the
	// adaptation domains' validation windows, the mixed stream the
	// self-check's slack is chosen on (Config.CheckSlacks). The held-out
	// domains get none: no choice sees them.
	HarmVal int
}

// Window is T+1 tokens of one domain: inputs Tokens[:T], next-token
// targets Tokens[1:]. Bytes is the UTF-8 length of the scored targets
// (tokens P..T), for bits per byte.
type Window struct {
	Tokens []int32 `json:"tokens"`
	Domain string  `json:"domain"`
	Bytes  int     `json:"bytes"`
}

// Windows is the benchmark's data before the base model has seen it: what
// `chameleon adapt bench --save-windows` writes so that a machine without
// the corpus (a lent GPU) can run the benchmark.
type Windows struct {
	Format string            `json:"format"`
	T      int               `json:"t"`      // tokens a window (inputs)
	Prompt int               `json:"prompt"` // P: tokens features are computed from; targets P..T are scored
	Roles  map[string]string `json:"roles"`  // domain -> RolePretrain, RoleAdapt or RoleHeldOut
	Order  []string          `json:"order"`  // domains in report order
	Vocab  int               `json:"vocab"`  // the tokenizer's size, checked against the model
	Seed   uint64            `json:"seed"`
	// Splits: "train", "validation", "test" (adaptation domains), "harm"
	// (test windows of the pretraining and held-out domains), "fit"
	// (training windows of the pretraining domains, for the gate) and
	// "harm-validation" (validation windows of the pretraining domains).
	Splits map[string][]Window `json:"splits"`
}

const windowsFormat = "chameleon-adapt-windows/1"

// DomainsOf lists the domains of role in report order.
func (w *Windows) DomainsOf(role string) []string {
	var out []string
	for _, d := range w.Order {
		if w.Roles[d] == role {
			out = append(out, d)
		}
	}
	return out
}

// Keep drops every split but splits (a command that reads some of them
// need not run the base model over the others).
func (w *Windows) Keep(splits ...string) {
	for k := range w.Splits {
		if !slices.Contains(splits, k) {
			delete(w.Splits, k)
		}
	}
}

// BuildWindows cuts the corpus into the benchmark's windows: for each
// adaptation domain Sizes.Train, Validation and Test windows of its own
// splits, for each pretraining and held-out domain Sizes.Harm windows of
// its test split, and for each pretraining domain Sizes.Fit of its
// training split and Sizes.HarmVal of its validation split. A split's documents, each followed by <|endoftext|>, are
// one token stream cut into consecutive windows; a seeded shuffle picks
// which. roles maps every domain used to its role.
func BuildWindows(c *data.Corpus, tok *tokenizer.Tokenizer, roles map[string]string, t, prompt int, sz Sizes, seed uint64) (*Windows, error) {
	if t < 2 || prompt < 1 || prompt >= t {
		return nil, fmt.Errorf("adaptrun: windows of %d tokens with a %d-token prompt: want 1 <= prompt < t", t, prompt)
	}
	w := &Windows{Format: windowsFormat, T: t, Prompt: prompt, Roles: roles, Vocab: tok.VocabSize(), Seed: seed,
		Splits: map[string][]Window{}}
	for _, d := range c.Domains() {
		if _, ok := roles[d]; ok {
			w.Order = append(w.Order, d)
		}
	}
	for d := range roles {
		if !slices.Contains(w.Order, d) {
			return nil, fmt.Errorf("adaptrun: domain %q is not in the corpus (%v)", d, c.Domains())
		}
	}
	if len(w.DomainsOf(RoleAdapt)) == 0 {
		return nil, fmt.Errorf("adaptrun: no adaptation domains")
	}
	for di, d := range w.Order {
		type job struct {
			split, key string
			n          int
		}
		var jobs []job
		if roles[d] == RoleAdapt {
			jobs = []job{{"train", "train", sz.Train}, {"validation", "validation", sz.Validation}, {"test", "test", sz.Test}}
		} else {
			jobs = []job{{"test", "harm", sz.Harm}}
			if roles[d] == RolePretrain {
				// appended after the others, so that their seeds, and
				// the windows of files cut before, stay as they were
				jobs = append(jobs, job{"train", "fit", sz.Fit}, job{"validation", "harm-validation", sz.HarmVal})
			}
		}
		for ji, j := range jobs {
			if j.n <= 0 {
				continue
			}
			ws, err := cut(c, tok, d, j.split, t, prompt, j.n, seed+uint64(di)*16+uint64(ji))
			if err != nil {
				return nil, err
			}
			w.Splits[j.key] = append(w.Splits[j.key], ws...)
		}
	}
	return w, nil
}

// cut returns n windows (fewer when the split is short) of domain d's split.
func cut(c *data.Corpus, tok *tokenizer.Tokenizer, d, split string, t, prompt, n int, seed uint64) ([]Window, error) {
	var stream []int32
	for doc, err := range c.All(d, split) {
		if err != nil {
			return nil, err
		}
		stream = append(tok.AppendEncode(stream, doc.Text), tok.EOT())
	}
	var starts []int
	for o := 0; o+t+1 <= len(stream); o += t {
		starts = append(starts, o)
	}
	if len(starts) == 0 {
		return nil, fmt.Errorf("adaptrun: domain %s has no %s window of %d tokens", d, split, t)
	}
	rand.New(rand.NewPCG(seed, 0x5eed)).Shuffle(len(starts), func(i, j int) { starts[i], starts[j] = starts[j], starts[i] })
	out := make([]Window, 0, min(n, len(starts)))
	for _, o := range starts[:min(n, len(starts))] {
		toks := slices.Clone(stream[o : o+t+1])
		out = append(out, Window{Tokens: toks, Domain: d, Bytes: len(tok.Decode(toks[prompt:]))})
	}
	return out, nil
}

// Save writes the windows as gzipped JSON.
func (w *Windows) Save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	z := gzip.NewWriter(f)
	err = json.NewEncoder(z).Encode(w)
	if e := z.Close(); err == nil {
		err = e
	}
	if e := f.Close(); err == nil {
		err = e
	}
	return err
}

// readGzipJSON decodes the gzipped JSON file path into v.
func readGzipJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("adaptrun: %s: %w", path, err)
	}
	if err := json.NewDecoder(z).Decode(v); err != nil {
		return fmt.Errorf("adaptrun: %s: %w", path, err)
	}
	return nil
}

// LoadWindows reads what Save wrote and checks it: the window sizes, the
// vocabulary (positive, within int32 token ids), the domains (Order lists
// each domain of Roles once, every role is a known one, every window's
// domain is in Order) and every window's tokens and byte count.
func LoadWindows(path string) (*Windows, error) {
	var w Windows
	if err := readGzipJSON(path, &w); err != nil {
		return nil, err
	}
	if w.Format != windowsFormat {
		return nil, fmt.Errorf("adaptrun: %s: format %q, want %q", path, w.Format, windowsFormat)
	}
	order, err := w.checkHeader()
	if err != nil {
		return nil, fmt.Errorf("adaptrun: %s: %w", path, err)
	}
	for split, ws := range w.Splits {
		for i, x := range ws {
			if err := w.checkWindow(x, order); err != nil {
				return nil, fmt.Errorf("adaptrun: %s: %s window %d: %w", path, split, i, err)
			}
		}
	}
	return &w, nil
}

// checkHeader checks the sizes, the vocabulary and the domains of w, and
// returns the set of domains in the order.
func (w *Windows) checkHeader() (map[string]bool, error) {
	if w.T < 2 || w.T >= math.MaxInt32 || w.Prompt < 1 || w.Prompt >= w.T {
		return nil, fmt.Errorf("windows of %d tokens with a %d-token prompt: want 1 <= prompt < t < 2^31", w.T, w.Prompt)
	}
	if w.Vocab < 1 || w.Vocab > math.MaxInt32 {
		return nil, fmt.Errorf("a vocabulary of %d tokens: want 1..%d (int32 token ids)", w.Vocab, math.MaxInt32)
	}
	order := make(map[string]bool, len(w.Order))
	for _, d := range w.Order {
		if order[d] {
			return nil, fmt.Errorf("domain %q is listed twice in the order", d)
		}
		order[d] = true
		if _, ok := w.Roles[d]; !ok {
			return nil, fmt.Errorf("domain %q of the order has no role", d)
		}
	}
	for d, role := range w.Roles {
		if role != RolePretrain && role != RoleAdapt && role != RoleHeldOut {
			return nil, fmt.Errorf("domain %q has role %q, want %s, %s or %s", d, role, RolePretrain, RoleAdapt, RoleHeldOut)
		}
		if !order[d] {
			return nil, fmt.Errorf("domain %q has a role but is not in the order", d)
		}
	}
	return order, nil
}

// checkWindow checks one window against w's header (order: the domains
// of w.Order).
func (w *Windows) checkWindow(x Window, order map[string]bool) error {
	if len(x.Tokens) != w.T+1 {
		return fmt.Errorf("%d tokens, want %d", len(x.Tokens), w.T+1)
	}
	if !order[x.Domain] {
		return fmt.Errorf("domain %q is not in the order", x.Domain)
	}
	if x.Bytes < 0 {
		return fmt.Errorf("%d bytes of scored targets, want at least 0", x.Bytes)
	}
	for _, id := range x.Tokens {
		if id < 0 || int(id) >= w.Vocab {
			return fmt.Errorf("token %d is outside the vocabulary of %d", id, w.Vocab)
		}
	}
	return nil
}
