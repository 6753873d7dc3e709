package data

// ManifestName is the manifest's file name inside a corpus dir.
const ManifestName = "manifest.json"

// ManifestFormat identifies the corpus layout this package writes. Format 2
// adds domain roles and near-duplicate figures; Open also reads format 1
// (ManifestFormatV1), whose domains are all pretraining domains.
const ManifestFormat = "chameleon-corpus/2"

// ManifestFormatV1 is the previous format, without roles.
const ManifestFormatV1 = "chameleon-corpus/1"

// Manifest describes a built corpus: how it was built, from what, and every
// output file with its size, token count and SHA-256.
type Manifest struct {
	Format  string        `json:"format"`
	Params  Params        `json:"params"`
	Sources []SourceInfo  `json:"sources"`
	Domains []DomainStats `json:"domains"`
	Files   []FileInfo    `json:"files"`
}

// Params are the build options that shape the output.
type Params struct {
	Seed              uint64   `json:"seed"`
	MaxTrainBytes     int64    `json:"max_train_bytes"`
	ValidationPercent int      `json:"validation_percent"`
	TestPercent       int      `json:"test_percent"`
	MinDocChars       int      `json:"min_doc_chars"`
	MaxDocBytes       int      `json:"max_doc_bytes"`
	Domains           []string `json:"domains"`
	Tokenizer         string   `json:"tokenizer"`

	// The adapt and heldout domains' own cap and split percentages (the
	// fields above apply to the pretraining domains).
	AdaptMaxTrainBytes     int64 `json:"adapt_max_train_bytes,omitempty"`
	AdaptValidationPercent int   `json:"adapt_validation_percent,omitempty"`
	AdaptTestPercent       int   `json:"adapt_test_percent,omitempty"`

	// Near-duplicate removal (see Shingles).
	ShingleBytes       int     `json:"shingle_bytes,omitempty"`
	ShingleSample      int     `json:"shingle_sample,omitempty"`       // one window in this many (by hash) is a sampled shingle
	CrossSplitShared   float64 `json:"cross_split_shared,omitempty"`   // a validation/test document with at least this fraction of its shingles in the reference is removed
	WithinDomainShared float64 `json:"within_domain_shared,omitempty"` // an adapt/heldout candidate with at least this fraction of its shingles in the domain's kept documents is dropped
}

// DomainStats counts what happened to a domain's candidate documents.
type DomainStats struct {
	Domain     string `json:"domain"`
	Role       string `json:"role,omitempty"`  // RolePretrain, RoleAdapt or RoleHeldout; "" (format 1) means pretrain
	Candidates int    `json:"candidates"`      // documents the sources offered
	Kept       int    `json:"kept"`            // selected (before chunking and cross-split removal)
	Empty      int    `json:"empty"`           // dropped as empty or near-empty after cleaning
	Duplicates int    `json:"duplicates"`      // dropped as exact duplicates of a kept text
	NearDups   int    `json:"near_duplicates"` // adapt/heldout only: dropped as near-duplicates of a kept document of the domain
	Capped     int    `json:"capped"`          // not used because their split was full

	// Validation and test records removed as near-duplicates of the
	// reference (see SplitDedupe), one entry each.
	CrossSplit []SplitDedupe `json:"cross_split,omitempty"`
}

// SplitDedupe is what cross-split near-duplicate removal did to one later
// split of a domain. The reference of validation is every pretraining
// domain's train split plus the domain's own train split (all that the base
// model, or the domain's adapter, is trained on); test's is the same plus
// the domain's kept validation records.
type SplitDedupe struct {
	Split        string `json:"split"`
	Removed      int    `json:"removed"`       // records removed
	RemovedBytes int64  `json:"removed_bytes"` // their text bytes
	// After removal: the split's sampled shingles (counted once per record)
	// and how many of them the train reference (without validation) holds.
	Shingles    int64   `json:"shingles"`
	Shared      int64   `json:"shared"`
	SharedTrain float64 `json:"shared_with_train"` // Shared / Shingles
}

// FileInfo describes one (domain, split) file.
type FileInfo struct {
	Domain    string `json:"domain"`
	Split     string `json:"split"`
	File      string `json:"file"`
	Documents int    `json:"documents"`  // records (a chunked document counts once per chunk)
	TextBytes int64  `json:"text_bytes"` // UTF-8 bytes of the texts
	Bytes     int64  `json:"bytes"`      // size of the file
	Tokens    int64  `json:"tokens"`     // GPT-2 tokens of the texts
	SHA256    string `json:"sha256"`     // of the file
}

// File returns the entry of (domain, split), or nil.
func (m *Manifest) File(domain, split string) *FileInfo {
	for i := range m.Files {
		if m.Files[i].Domain == domain && m.Files[i].Split == split {
			return &m.Files[i]
		}
	}
	return nil
}
