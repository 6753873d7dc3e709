package data

// ManifestName is the manifest's file name inside a corpus dir.
const ManifestName = "manifest.json"

// ManifestFormat identifies the corpus layout this package writes and reads.
const ManifestFormat = "chameleon-corpus/1"

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
}

// DomainStats counts what happened to a domain's candidate documents.
type DomainStats struct {
	Domain     string `json:"domain"`
	Candidates int    `json:"candidates"` // documents the sources offered
	Kept       int    `json:"kept"`       // written (before chunking)
	Empty      int    `json:"empty"`      // dropped as empty or near-empty after cleaning
	Duplicates int    `json:"duplicates"` // dropped as exact duplicates of a kept text
	Capped     int    `json:"capped"`     // not used because their split was full
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
