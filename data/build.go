package data

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

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
		if err := o.finishDomain(m, domain, results[i], base, times[i]); err != nil {
			return nil, err
		}
		results[i] = nil
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

// finishDomain removes from a selected domain's validation and test splits
// the near-duplicates of its reference (base, the pretraining train text,
// and an adapt or heldout domain's own train split), writes its three
// files, and adds them and its stats to m. took is the time its selection
// took, for the progress line.
func (o *Options) finishDomain(m *Manifest, domain string, res *domainResult, base shingleIndex, took time.Duration) error {
	t0 := time.Now()
	refs := []shingleIndex{base}
	if res.stats.Role != RolePretrain {
		refs = append(refs, newShingleIndex(texts(res.docs[SplitTrain])))
	}
	var err error
	res.docs[SplitValidation], res.stats.CrossSplit, err = o.dedupeSplit(SplitValidation, res.docs[SplitValidation], refs, nil)
	if err != nil {
		return err
	}
	val := newShingleIndex(texts(res.docs[SplitValidation]))
	var test []SplitDedupe
	res.docs[SplitTest], test, err = o.dedupeSplit(SplitTest, res.docs[SplitTest], refs, val)
	if err != nil {
		return err
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
			return err
		}
		m.Files = append(m.Files, fi)
		line = append(line, fmt.Sprintf("%s %d docs %.2f MB %d tok", split, fi.Documents, float64(fi.TextBytes)/1e6, fi.Tokens))
	}
	if o.Progress != nil {
		s := res.stats
		var dd []string
		for _, c := range s.CrossSplit {
			dd = append(dd, fmt.Sprintf("%s -%d (%.1f%% shared)", c.Split, c.Removed, 100*c.SharedTrain))
		}
		fmt.Fprintf(o.Progress, "data: %-9s %-8s %s; %d candidates: %d kept, %d empty, %d duplicate, %d near-duplicate, %d over cap; near-duplicates of train: %s (%.1fs)\n",
			domain, s.Role, strings.Join(line, ", "), s.Candidates, s.Kept, s.Empty, s.Duplicates, s.NearDups, s.Capped, strings.Join(dd, ", "), (took + time.Since(t0)).Seconds())
	}
	return nil
}
