package train

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/chameleon-llm/chameleon/data"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// writeRoleCorpus writes a corpus dir by hand: one pretrain, one adapt and
// one heldout domain, each split one document.
func writeRoleCorpus(t *testing.T) string {
	dir := t.TempDir()
	m := data.Manifest{Format: data.ManifestFormat}
	for _, d := range []struct{ name, role string }{{"alpha", data.RolePretrain}, {"beta", data.RoleAdapt}, {"gamma", data.RoleHeldout}} {
		m.Domains = append(m.Domains, data.DomainStats{Domain: d.name, Role: d.role})
		for _, split := range data.Splits {
			doc := data.Doc{ID: d.name + "/1", Domain: d.name, Text: "text of " + d.name + " " + split + " for the test"}
			b, _ := json.Marshal(doc)
			f := data.FileName(d.name, split)
			if err := os.WriteFile(filepath.Join(dir, f), append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			m.Files = append(m.Files, data.FileInfo{Domain: d.name, Split: split, File: f, Documents: 1})
		}
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, data.ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadCorpusReadsPretrainOnly(t *testing.T) {
	tok, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	ds, err := LoadCorpus(writeRoleCorpus(t), tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Domains) != 1 || ds.Domains[0] != "alpha" || len(ds.Val) != 1 {
		t.Errorf("domains %v, validation streams %d; want only alpha", ds.Domains, len(ds.Val))
	}
	want := append(tok.Encode("text of alpha train for the test"), tok.EOT())
	if len(ds.Train) != len(want) {
		t.Errorf("train stream %q, want alpha's train document only", tok.Decode(ds.Train))
	}
}
