package data

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
)

// Doc is one document of the corpus. Domain is a label for evaluation only
// (per-domain perplexity, oracle experts, cluster purity); clustering and
// the adaptive model must never see it.
type Doc struct {
	ID     string `json:"id"`
	Domain string `json:"domain"`
	Text   string `json:"text"`
}

// Corpus is a built corpus dir opened for reading.
type Corpus struct {
	dir string
	m   Manifest
}

// Open reads dir/manifest.json. It does not read the data files; Verify
// checks them against the manifest.
func Open(dir string) (*Corpus, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("data: %s has no %s: build the corpus with `make data` (chameleon data build): %w", dir, ManifestName, err)
		}
		return nil, err
	}
	c := &Corpus{dir: dir}
	if err := json.Unmarshal(b, &c.m); err != nil {
		return nil, fmt.Errorf("data: %s: %w", filepath.Join(dir, ManifestName), err)
	}
	if c.m.Format != ManifestFormat && c.m.Format != ManifestFormatV1 {
		return nil, fmt.Errorf("data: %s: format %q, this build reads %q and %q (rebuild with `make data`)", dir, c.m.Format, ManifestFormat, ManifestFormatV1)
	}
	return c, nil
}

// Dir is the corpus dir.
func (c *Corpus) Dir() string { return c.dir }

// Manifest returns the manifest (do not modify it).
func (c *Corpus) Manifest() *Manifest { return &c.m }

// Domains lists the corpus's domains in build order.
func (c *Corpus) Domains() []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range c.m.Files {
		if !seen[f.Domain] {
			seen[f.Domain] = true
			out = append(out, f.Domain)
		}
	}
	return out
}

// All streams the documents of (domain, split) in file order.
func (c *Corpus) All(domain, split string) iter.Seq2[Doc, error] {
	return func(yield func(Doc, error) bool) {
		fi := c.m.File(domain, split)
		if fi == nil {
			yield(Doc{}, fmt.Errorf("data: corpus %s has no (%s, %s) file (domains: %v)", c.dir, domain, split, c.Domains()))
			return
		}
		path := filepath.Join(c.dir, fi.File)
		f, err := os.Open(path)
		if err != nil {
			yield(Doc{}, err)
			return
		}
		defer f.Close()
		r := bufio.NewReaderSize(f, 1<<20)
		for line := 1; ; line++ {
			b, err := r.ReadBytes('\n')
			if len(b) > 0 {
				var d Doc
				if e := json.Unmarshal(b, &d); e != nil {
					yield(Doc{}, fmt.Errorf("data: %s:%d: %w", path, line, e))
					return
				}
				if !yield(d, nil) {
					return
				}
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(Doc{}, err)
				return
			}
		}
	}
}

// Docs returns every document of (domain, split).
func (c *Corpus) Docs(domain, split string) ([]Doc, error) {
	var out []Doc
	for d, err := range c.All(domain, split) {
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Verify checks every file's size and SHA-256 against the manifest.
func (c *Corpus) Verify() error {
	for _, fi := range c.m.Files {
		path := filepath.Join(c.dir, fi.File)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); n != fi.Bytes || got != fi.SHA256 {
			return fmt.Errorf("data: %s: %d bytes, SHA-256 %s; manifest says %d bytes, %s (rebuild with `make data`)", path, n, got, fi.Bytes, fi.SHA256)
		}
	}
	return nil
}
