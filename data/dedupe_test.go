package data

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShingles(t *testing.T) {
	a := strings.Repeat("The quick brown fox jumps over the lazy dog, again and again. ", 20) + "Unique tail of the first text, nothing like it."
	b := "A prefix that moves everything along. " + a[:len(a)/2] + " an edit " + a[len(a)/2:]
	sa, sb := Shingles(nil, a), Shingles(nil, b)
	if len(sa) == 0 || len(Shingles(nil, a[:ShingleBytes-1])) != 0 {
		t.Fatalf("%d shingles; a text shorter than a shingle has %d", len(sa), len(Shingles(nil, a[:ShingleBytes-1])))
	}
	if n := shared(sb, newShingleIndex([]string{a})); float64(n) < 0.5*float64(len(sb)) {
		t.Errorf("a shifted, edited copy shares %d of %d shingles", n, len(sb))
	}
	c := strings.Repeat("Entirely different words make up this unrelated document here. ", 20)
	if n := shared(Shingles(nil, c), newShingleIndex([]string{a})); n != 0 {
		t.Errorf("an unrelated text shares %d shingles", n)
	}
}

// plantedFortunes writes a fortune file whose fortune k (ids
// "fortunes/planted/%04d") is in the split the test needs: a long text in
// train, its edited copy in validation, and an unrelated long text in
// validation.
func plantedFortunes(t *testing.T, src string) (copyID, otherID string) {
	long := strings.Repeat("Never trust a computer you cannot throw out of a window, said the sage. ", 8)
	edited := strings.Replace(long, "said the sage", "said the wise old sage", 1)
	other := strings.Repeat("Ducks and geese migrate south as the evenings draw in over the marsh. ", 8)
	id := func(k int) string { return fmt.Sprintf("fortunes/planted/%04d", k) }
	texts := map[int]string{}
	need := []struct {
		split, text string
		id          *string
	}{{SplitTrain, long, nil}, {SplitValidation, edited, &copyID}, {SplitValidation, other, &otherID}}
	k := 1
	for _, n := range need {
		for SplitOf(1, DomainQuotes, id(k), 5, 5) != n.split {
			texts[k] = fmt.Sprintf("Filler fortune %d, short and harmless.", k)
			k++
		}
		texts[k] = n.text
		if n.id != nil {
			*n.id = id(k)
		}
		k++
	}
	var b strings.Builder
	for i := 1; i < k; i++ {
		b.WriteString(texts[i] + "\n%\n")
	}
	if err := os.WriteFile(filepath.Join(src, srcFortunes, "planted"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return copyID, otherID
}

func TestCrossSplitNearDuplicates(t *testing.T) {
	src, goroot := fakeSources(t, 20)
	copyID, otherID := plantedFortunes(t, src)
	build := func(shared float64) (string, *Manifest) {
		out := t.TempDir()
		m, err := Build(Options{Src: src, Out: out, GOROOT: goroot, MinDocChars: 20, Workers: 2, renderMan: fakeMan, CrossSplitShared: shared})
		if err != nil {
			t.Fatal(err)
		}
		return out, m
	}
	offDir, _ := build(2) // off
	onDir, m := build(0)  // default 0.2
	ids := func(dir, split string) map[string]bool {
		c, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := c.Docs(DomainQuotes, split)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, d := range docs {
			out[d.ID] = true
		}
		return out
	}
	if off := ids(offDir, SplitValidation); !off[copyID] || !off[otherID] {
		t.Fatalf("without removal validation lacks %s or %s: %v", copyID, otherID, off)
	}
	on := ids(onDir, SplitValidation)
	if on[copyID] {
		t.Errorf("the planted near-duplicate %s stayed in validation", copyID)
	}
	if !on[otherID] {
		t.Errorf("the unrelated %s was removed from validation", otherID)
	}
	var q DomainStats
	for _, d := range m.Domains {
		if d.Domain == DomainQuotes {
			q = d
		}
	}
	if len(q.CrossSplit) != 2 || q.CrossSplit[0].Split != SplitValidation || q.CrossSplit[0].Removed != 1 || q.CrossSplit[0].RemovedBytes == 0 || q.CrossSplit[0].SharedTrain >= 0.2 {
		t.Errorf("quotes cross-split figures: %+v", q.CrossSplit)
	}
	// Train is untouched, for every domain.
	for _, d := range AllDomains {
		a, _ := os.ReadFile(filepath.Join(offDir, FileName(d, SplitTrain)))
		b, _ := os.ReadFile(filepath.Join(onDir, FileName(d, SplitTrain)))
		if !bytes.Equal(a, b) {
			t.Errorf("%s train differs with near-duplicate removal", d)
		}
	}
}

func TestWithinDomainNearDuplicates(t *testing.T) {
	src, goroot := fakeSources(t, 3)
	out := filepath.Join(t.TempDir(), "c")
	m := buildFake(t, src, goroot, out, 0)
	c, _ := Open(out)
	mit := 0
	for _, d := range mustDocs(t, c, DomainLicenses) {
		if strings.Contains(d.Text, "Permission is hereby granted") {
			mit++
		}
	}
	for _, d := range m.Domains {
		if d.Domain == DomainLicenses && (d.NearDups != 1 || mit != 1) {
			t.Errorf("licenses: %d near-duplicates dropped, %d MIT texts kept; want 1 and 1", d.NearDups, mit)
		}
	}
}

func TestRoles(t *testing.T) {
	src, goroot := fakeSources(t, 3)
	out := filepath.Join(t.TempDir(), "c")
	buildFake(t, src, goroot, out, 0)
	c, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	for role, want := range map[string][]string{RolePretrain: PretrainDomains, RoleAdapt: AdaptDomains, RoleHeldout: HeldoutDomains} {
		if got := c.DomainsWithRole(role); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", role, got, want)
		}
	}
	if c.Role(DomainBrown) != RoleHeldout || c.Role(DomainCode) != RolePretrain {
		t.Errorf("roles of brown and code: %s, %s", c.Role(DomainBrown), c.Role(DomainCode))
	}
	// A format-1 manifest (no roles) reads as all pretrain.
	b, _ := os.ReadFile(filepath.Join(out, ManifestName))
	b = bytes.ReplaceAll(b, []byte(`"format": "`+ManifestFormat+`"`), []byte(`"format": "`+ManifestFormatV1+`"`))
	for _, r := range []string{RoleAdapt, RoleHeldout} {
		b = bytes.ReplaceAll(b, []byte(`"role": "`+r+`"`), []byte(`"role": ""`))
	}
	os.WriteFile(filepath.Join(out, ManifestName), b, 0o644)
	c, err = Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.DomainsWithRole(RolePretrain); len(got) != len(AllDomains) {
		t.Errorf("format 1: pretrain domains %v", got)
	}
}
