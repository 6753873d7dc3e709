package data

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// The three splits, in file order.
const (
	SplitTrain      = "train"
	SplitValidation = "validation"
	SplitTest       = "test"
)

// Splits lists the splits in order.
var Splits = []string{SplitTrain, SplitValidation, SplitTest}

// Options configures Build. The zero value of a field means its default.
type Options struct {
	Src    string // cache dir filled by scripts/fetch_corpus_sources.sh
	Out    string // output dir
	GOROOT string // Go toolchain root for the code domain; default `go env GOROOT`
	// ManDir, when set, adds the man pages under it (man1..man8) to those of
	// the fetched manpages and manpages-dev packages. Off by default: what is
	// installed differs between machines (this one has 16,631 gcloud pages).
	ManDir  string
	Domains []string // subset to build; default AllDomains

	Seed              uint64 // salts the split and order hashes; default 1
	MaxTrainBytes     int64  // cap on a domain's train text; validation and test get the same share of it as of the whole; <0 = no cap; default 8 MiB
	ValidationPercent int    // default 5
	TestPercent       int    // default 5
	MinDocChars       int    // documents with fewer non-space characters are dropped; default 16
	MaxDocBytes       int    // longer documents are cut into chunks (ids "<id>#<k>") that stay in the document's split; default 64 KiB

	// The adapt and heldout domains are kept small: their train split feeds
	// adapters (a few hundred windows) and their validation and test splits
	// need a few hundred windows of evaluation each.
	AdaptMaxTrainBytes     int64 // default 2 MiB; <0 = no cap
	AdaptValidationPercent int   // default 15
	AdaptTestPercent       int   // default 15

	CrossSplitShared   float64 // validation/test records sharing at least this fraction of shingles with the reference are removed; default 0.2; >1 = off
	WithinDomainShared float64 // adapt/heldout candidates sharing at least this fraction with the domain's kept documents are dropped; default 0.5

	Workers   int                  // parallel loaders and tokenizers; default GOMAXPROCS
	Progress  io.Writer            // one line per domain; nil = silent
	Tokenizer *tokenizer.Tokenizer // default tokenizer.NewGPT2()

	versions  map[string]string
	renderMan func(path string) (string, error) // tests replace man-db
}

func (o *Options) defaults() error {
	if o.Src == "" || o.Out == "" {
		return fmt.Errorf("data: Options.Src and Options.Out are required")
	}
	if o.GOROOT == "" {
		b, err := exec.Command("go", "env", "GOROOT").Output()
		if err != nil {
			o.GOROOT = runtime.GOROOT()
		} else {
			o.GOROOT = strings.TrimSpace(string(b))
		}
	}
	if len(o.Domains) == 0 {
		o.Domains = AllDomains
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.MaxTrainBytes == 0 {
		o.MaxTrainBytes = 8 << 20
	}
	if o.ValidationPercent == 0 {
		o.ValidationPercent = 5
	}
	if o.TestPercent == 0 {
		o.TestPercent = 5
	}
	if o.ValidationPercent < 0 || o.TestPercent < 0 || o.ValidationPercent+o.TestPercent >= 100 {
		return fmt.Errorf("data: validation %d%% + test %d%% must leave some train", o.ValidationPercent, o.TestPercent)
	}
	if o.AdaptMaxTrainBytes == 0 {
		o.AdaptMaxTrainBytes = 2 << 20
	}
	if o.AdaptValidationPercent == 0 {
		o.AdaptValidationPercent = 15
	}
	if o.AdaptTestPercent == 0 {
		o.AdaptTestPercent = 15
	}
	if o.AdaptValidationPercent < 0 || o.AdaptTestPercent < 0 || o.AdaptValidationPercent+o.AdaptTestPercent >= 100 {
		return fmt.Errorf("data: adapt validation %d%% + test %d%% must leave some train", o.AdaptValidationPercent, o.AdaptTestPercent)
	}
	if o.CrossSplitShared == 0 {
		o.CrossSplitShared = 0.2
	}
	if o.WithinDomainShared == 0 {
		o.WithinDomainShared = 0.5
	}
	for _, d := range o.Domains {
		if DomainRole(d) == "" {
			return fmt.Errorf("data: unknown domain %q (have %s)", d, strings.Join(AllDomains, ", "))
		}
	}
	if o.MinDocChars == 0 {
		o.MinDocChars = 16
	}
	if o.MaxDocBytes == 0 {
		o.MaxDocBytes = 64 << 10
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Tokenizer == nil {
		t, err := tokenizer.NewGPT2()
		if err != nil {
			return err
		}
		o.Tokenizer = t
	}
	o.versions = readVersions(o.Src)
	return nil
}

// hash64 is the first 8 bytes of SHA-256 of the joined parts.
func hash64(parts ...string) uint64 {
	s := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return binary.BigEndian.Uint64(s[:8])
}

// SplitOf assigns a document to a split by a hash of its domain and id, so
// a document's split never depends on which other documents exist.
func SplitOf(seed uint64, domain, id string, validationPercent, testPercent int) string {
	p := int(hash64("split", fmt.Sprint(seed), domain, id) % 100)
	switch {
	case p < 100-validationPercent-testPercent:
		return SplitTrain
	case p < 100-testPercent:
		return SplitValidation
	}
	return SplitTest
}

// splitSpec is how one domain is split and capped.
type splitSpec struct {
	maxTrain         int64
	validation, test int // percent
}

// specOf returns the split parameters of a domain's role: the pretraining
// domains use MaxTrainBytes, ValidationPercent and TestPercent, the others
// their Adapt* counterparts.
func (o *Options) specOf(domain string) splitSpec {
	if DomainRole(domain) == RolePretrain {
		return splitSpec{o.MaxTrainBytes, o.ValidationPercent, o.TestPercent}
	}
	return splitSpec{o.AdaptMaxTrainBytes, o.AdaptValidationPercent, o.AdaptTestPercent}
}

// caps returns the byte cap of each split (-1: none): validation and test
// get the same share of the train cap as of the whole.
func (s splitSpec) caps() map[string]int64 {
	if s.maxTrain < 0 {
		return map[string]int64{SplitTrain: -1, SplitValidation: -1, SplitTest: -1}
	}
	trainPct := int64(100 - s.validation - s.test)
	return map[string]int64{
		SplitTrain:      s.maxTrain,
		SplitValidation: s.maxTrain * int64(s.validation) / trainPct,
		SplitTest:       s.maxTrain * int64(s.test) / trainPct,
	}
}

// domainResult is what buildDomain selected.
type domainResult struct {
	docs  map[string][]Doc
	stats DomainStats
}

// buildDomain lists a domain's candidates, visits them in a seeded
// pseudo-random order (loading a window of them in parallel), cleans,
// filters and de-duplicates them (seen holds the SHA-256 of every text kept
// so far, across domains; an adapt or heldout domain also drops near-
// duplicates of its own kept documents), and fills each split up to its cap.
func (o *Options) buildDomain(domain string, seen map[[32]byte]bool) (*domainResult, []SourceInfo, error) {
	cands, info, err := o.candidates(domain)
	if err != nil {
		return nil, nil, err
	}
	seed := fmt.Sprint(o.Seed)
	keys := make(map[string]uint64, len(cands))
	for _, c := range cands {
		keys[c.id] = hash64("order", seed, domain, c.id)
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].tier != cands[j].tier {
			return cands[i].tier < cands[j].tier
		}
		ki, kj := keys[cands[i].id], keys[cands[j].id]
		if ki != kj {
			return ki < kj
		}
		return cands[i].id < cands[j].id
	})
	spec := o.specOf(domain)
	caps := spec.caps()
	nearDedupe := DomainRole(domain) != RolePretrain
	kept := map[uint64]bool{} // sampled shingles of the kept documents (nearDedupe only)
	var sh []uint64
	res := &domainResult{docs: map[string][]Doc{}}
	res.stats.Domain = domain
	res.stats.Role = DomainRole(domain)
	res.stats.Candidates = len(cands)
	bytes := map[string]int64{}
	full := func(split string) bool { return caps[split] >= 0 && bytes[split] >= caps[split] }
	window := o.Workers * 16
	texts := make([]string, window)
	errs := make([]error, window)
	for start := 0; start < len(cands); start += window {
		if full(SplitTrain) && full(SplitValidation) && full(SplitTest) {
			res.stats.Capped += len(cands) - start
			break
		}
		batch := cands[start:min(start+window, len(cands))]
		var wg sync.WaitGroup
		next := make(chan int)
		for range o.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					t, err := batch[i].load()
					texts[i], errs[i] = Clean(t), err
				}
			}()
		}
		for i := range batch {
			next <- i
		}
		close(next)
		wg.Wait()
		for i, c := range batch {
			if errs[i] != nil {
				return nil, nil, fmt.Errorf("data: %s: %s: %w", domain, c.id, errs[i])
			}
			text := texts[i]
			if substantive(text) < o.MinDocChars {
				res.stats.Empty++
				continue
			}
			h := sha256.Sum256([]byte(text))
			if seen[h] {
				res.stats.Duplicates++
				continue
			}
			seen[h] = true
			split := SplitOf(o.Seed, domain, c.id, spec.validation, spec.test)
			if full(split) {
				res.stats.Capped++
				continue
			}
			if nearDedupe {
				sh = Shingles(sh, text)
				n := 0
				for _, x := range sh {
					if kept[x] {
						n++
					}
				}
				if len(sh) > 0 && float64(n) >= o.WithinDomainShared*float64(len(sh)) {
					res.stats.NearDups++
					continue
				}
				for _, x := range sh {
					kept[x] = true
				}
			}
			pieces := chunk(text, o.MaxDocBytes)
			for k, p := range pieces {
				if full(split) {
					break
				}
				id := c.id
				if len(pieces) > 1 {
					id = fmt.Sprintf("%s#%d", c.id, k+1)
				}
				res.docs[split] = append(res.docs[split], Doc{ID: id, Domain: domain, Text: p})
				bytes[split] += int64(len(p))
			}
			res.stats.Kept++
		}
	}
	return res, info, nil
}

// countTokens returns the GPT-2 token count of every document, in parallel.
func (o *Options) countTokens(docs []Doc) int64 {
	var total int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int, 64)
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n int64
			var buf []int32
			for i := range next {
				buf = o.Tokenizer.AppendEncode(buf[:0], docs[i].Text)
				n += int64(len(buf))
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	for i := range docs {
		next <- i
	}
	close(next)
	wg.Wait()
	return total
}

// writeJSONL writes docs one JSON object a line and returns the file's
// size and SHA-256.
func writeJSONL(path string, docs []Doc) (int64, string, error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, "", err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			f.Close()
			return 0, "", err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return 0, "", err
	}
	if err := f.Close(); err != nil {
		return 0, "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, "", err
	}
	return cw.n, hex.EncodeToString(h.Sum(nil)), nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// FileName is the name of the (domain, split) file inside a corpus dir.
func FileName(domain, split string) string { return domain + "." + split + ".jsonl" }

// Build builds the corpus from the cache dir into o.Out and returns its
// manifest, also written to o.Out/manifest.json. The same sources and
// options give byte-identical output.
//
// It selects every domain's documents first (train splits are final then),
// then removes from each domain's validation and test splits the records
// that are near-duplicates of its reference (see SplitDedupe), and writes.
func Build(o Options) (*Manifest, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	m := &Manifest{
		Format: ManifestFormat,
		Params: Params{
			Seed: o.Seed, MaxTrainBytes: o.MaxTrainBytes,
			ValidationPercent: o.ValidationPercent, TestPercent: o.TestPercent,
			MinDocChars: o.MinDocChars, MaxDocBytes: o.MaxDocBytes,
			Domains: o.Domains, Tokenizer: "GPT-2 BPE (r50k_base), text only, no end-of-text tokens",
			AdaptMaxTrainBytes: o.AdaptMaxTrainBytes, AdaptValidationPercent: o.AdaptValidationPercent, AdaptTestPercent: o.AdaptTestPercent,
			ShingleBytes: ShingleBytes, ShingleSample: ShingleSample,
			CrossSplitShared: o.CrossSplitShared, WithinDomainShared: o.WithinDomainShared,
		},
	}
	seen := map[[32]byte]bool{}
	results := make([]*domainResult, len(o.Domains))
	times := make([]time.Duration, len(o.Domains))
	for i, domain := range o.Domains {
		t0 := time.Now()
		res, info, err := o.buildDomain(domain, seen)
		if err != nil {
			return nil, err
		}
		m.Sources = append(m.Sources, info...)
		results[i] = res
		times[i] = time.Since(t0)
	}

	// The reference every later split is checked against: what the base
	// model trains on (all pretraining train splits), plus the domain's own
	// train split.
	var pretrain []string
	for _, res := range results {
		if res.stats.Role == RolePretrain {
			for _, d := range res.docs[SplitTrain] {
				pretrain = append(pretrain, d.Text)
			}
		}
	}
	base := newShingleIndex(pretrain)
	pretrain = nil

	for i, domain := range o.Domains {
		t0 := time.Now()
		res := results[i]
		refs := []shingleIndex{base}
		if res.stats.Role != RolePretrain {
			refs = append(refs, newShingleIndex(texts(res.docs[SplitTrain])))
		}
		var err error
		res.docs[SplitValidation], res.stats.CrossSplit, err = o.dedupeSplit(SplitValidation, res.docs[SplitValidation], refs, nil)
		if err != nil {
			return nil, err
		}
		val := newShingleIndex(texts(res.docs[SplitValidation]))
		var test []SplitDedupe
		res.docs[SplitTest], test, err = o.dedupeSplit(SplitTest, res.docs[SplitTest], refs, val)
		if err != nil {
			return nil, err
		}
		res.stats.CrossSplit = append(res.stats.CrossSplit, test...)
		m.Domains = append(m.Domains, res.stats)
		var line []string
		for _, split := range Splits {
			docs := res.docs[split]
			fi := FileInfo{Domain: domain, Split: split, File: FileName(domain, split), Documents: len(docs)}
			for _, d := range docs {
				fi.TextBytes += int64(len(d.Text))
			}
			fi.Tokens = o.countTokens(docs)
			if fi.Bytes, fi.SHA256, err = writeJSONL(filepath.Join(o.Out, fi.File), docs); err != nil {
				return nil, err
			}
			m.Files = append(m.Files, fi)
			line = append(line, fmt.Sprintf("%s %d docs %.2f MB %d tok", split, fi.Documents, float64(fi.TextBytes)/1e6, fi.Tokens))
		}
		results[i] = nil
		if o.Progress != nil {
			s := res.stats
			var dd []string
			for _, c := range s.CrossSplit {
				dd = append(dd, fmt.Sprintf("%s -%d (%.1f%% shared)", c.Split, c.Removed, 100*c.SharedTrain))
			}
			fmt.Fprintf(o.Progress, "data: %-9s %-8s %s; %d candidates: %d kept, %d empty, %d duplicate, %d near-duplicate, %d over cap; near-duplicates of train: %s (%.1fs)\n",
				domain, s.Role, strings.Join(line, ", "), s.Candidates, s.Kept, s.Empty, s.Duplicates, s.NearDups, s.Capped, strings.Join(dd, ", "), (times[i] + time.Since(t0)).Seconds())
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, ManifestName), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

func texts(docs []Doc) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.Text
	}
	return out
}

// dedupeSplit removes from docs (in order) every record whose sampled
// shingles are at least o.CrossSplitShared in refs or in prev, and returns
// the kept records and what it did. The shared figure after removal counts
// against refs only (the train reference).
func (o *Options) dedupeSplit(split string, docs []Doc, refs []shingleIndex, prev shingleIndex) ([]Doc, []SplitDedupe, error) {
	st := SplitDedupe{Split: split}
	all := append(refs[:len(refs):len(refs)], prev)
	kept := docs[:0:0]
	var sh []uint64
	for _, d := range docs {
		sh = Shingles(sh, d.Text)
		if len(sh) > 0 && float64(shared(sh, all...)) >= o.CrossSplitShared*float64(len(sh)) {
			st.Removed++
			st.RemovedBytes += int64(len(d.Text))
			continue
		}
		kept = append(kept, d)
		st.Shingles += int64(len(sh))
		st.Shared += int64(shared(sh, refs...))
	}
	if st.Shingles > 0 {
		st.SharedTrain = float64(st.Shared) / float64(st.Shingles)
	}
	return kept, []SplitDedupe{st}, nil
}
