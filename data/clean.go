package data

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clean applies the corpus's text rules to one document and returns the
// result (possibly ""):
//   - invalid UTF-8 bytes are dropped;
//   - CRLF and lone CR become LF;
//   - no-break spaces (U+00A0) become spaces;
//   - control characters other than LF and TAB are dropped, as are U+FEFF
//     (byte-order mark) and the other invisible format characters of
//     category Cf;
//   - trailing white space is removed from every line;
//   - runs of more than two blank lines become two blank lines;
//   - leading and trailing blank lines are removed (no final newline).
func Clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "")
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t':
		case r == '\u00a0':
			r = ' '
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			continue
		}
		b.WriteRune(r)
	}
	lines := strings.Split(b.String(), "\n")
	out := lines[:0]
	blank := 0
	for _, l := range lines {
		l = strings.TrimRight(l, " \t\u00a0")
		if l == "" {
			blank++
			if blank > 2 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	for len(out) > 0 && out[0] == "" {
		out = out[1:]
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return strings.Join(out, "\n")
}

// substantive counts the non-space characters of s: a document with fewer
// than Options.MinDocChars of them is "near-empty" and dropped.
func substantive(s string) int {
	n := 0
	for _, r := range s {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}

// chunk cuts a cleaned document into pieces of at most max bytes, preferring
// to cut after a blank line, then after a newline, then at a rune boundary.
// Every piece but possibly the last is non-empty after trimming.
func chunk(s string, max int) []string {
	if max <= 0 || len(s) <= max {
		return []string{s}
	}
	var out []string
	for len(s) > max {
		cut := strings.LastIndex(s[:max], "\n\n")
		if cut < max/2 {
			cut = strings.LastIndexByte(s[:max], '\n')
		}
		if cut < max/2 {
			cut = max
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
		}
		if p := strings.Trim(s[:cut], "\n"); p != "" {
			out = append(out, p)
		}
		s = strings.TrimLeft(s[cut:], "\n")
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}
