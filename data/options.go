package data

import (
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strings"

	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

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
