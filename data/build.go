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

	"github.com/chameleon-llm/chameleon/model"
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

	Workers   int              // parallel loaders and tokenizers; default GOMAXPROCS
	Progress  io.Writer        // one line per domain; nil = silent
	Tokenizer *model.Tokenizer // default model.NewGPT2Tokenizer()

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
		t, err := model.NewGPT2Tokenizer()
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

// caps returns the byte cap of each split (-1: none).
func (o *Options) caps() map[string]int64 {
	if o.MaxTrainBytes < 0 {
		return map[string]int64{SplitTrain: -1, SplitValidation: -1, SplitTest: -1}
	}
	trainPct := int64(100 - o.ValidationPercent - o.TestPercent)
	return map[string]int64{
		SplitTrain:      o.MaxTrainBytes,
		SplitValidation: o.MaxTrainBytes * int64(o.ValidationPercent) / trainPct,
		SplitTest:       o.MaxTrainBytes * int64(o.TestPercent) / trainPct,
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
// so far, across domains), and fills each split up to its cap.
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
	caps := o.caps()
	res := &domainResult{docs: map[string][]Doc{}}
	res.stats.Domain = domain
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
			split := SplitOf(o.Seed, domain, c.id, o.ValidationPercent, o.TestPercent)
			if full(split) {
				res.stats.Capped++
				continue
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
		},
	}
	seen := map[[32]byte]bool{}
	for _, domain := range o.Domains {
		t0 := time.Now()
		res, info, err := o.buildDomain(domain, seen)
		if err != nil {
			return nil, err
		}
		m.Sources = append(m.Sources, info...)
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
		if o.Progress != nil {
			s := res.stats
			fmt.Fprintf(o.Progress, "data: %-9s %s; %d candidates: %d kept, %d empty, %d duplicate, %d over cap (%.1fs)\n",
				domain, strings.Join(line, ", "), s.Candidates, s.Kept, s.Empty, s.Duplicates, s.Capped, time.Since(t0).Seconds())
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
