package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// This file splits text into pre-tokens exactly as GPT-2's pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// does when applied repeatedly from left to right. Go's regexp has no
// lookahead, so nextPiece is a small scanner that tries the alternatives in
// the pattern's order at each position.
//
// Character classes:
//   - letter: unicode.IsLetter (general category L)
//   - number: unicode.IsNumber (general category N)
//   - space:  unicode.IsSpace (the Unicode White_Space property), as in
//     Python's regex module that GPT-2 used and in tiktoken. JavaScript's \s
//     differs on two code points: it excludes U+0085 and includes U+FEFF.
//   - Go's tables are Unicode 15.0; characters assigned later (Unicode 16,
//     17) are other here, while a JavaScript engine with newer tables may
//     call them letters or numbers. All other code points agree with
//     node 20's \p{L}, \p{N} and \s.
//   - other: everything else, including every byte that is not part of valid
//     UTF-8. Each such byte is one character of class other, so runs of
//     invalid bytes group with punctuation, as JavaScript would group the
//     U+FFFD it decodes them to. The BPE works on the raw bytes, so they
//     round-trip unchanged.

// charClass is the class of one character for the pre-tokenizer.
type charClass uint8

const (
	classOther charClass = iota
	classLetter
	classNumber
	classSpace
)

// asciiClass is the class of each ASCII byte.
var asciiClass = func() (t [utf8.RuneSelf]charClass) {
	for b := range t {
		t[b] = classifyRune(rune(b))
	}
	return t
}()

func classifyRune(r rune) charClass {
	switch {
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	case unicode.IsSpace(r):
		return classSpace
	}
	return classOther
}

// classAt returns the class of the character that starts at s[i] and its
// length in bytes. An invalid UTF-8 byte is one character of class other.
func classAt(s string, i int) (charClass, int) {
	if b := s[i]; b < utf8.RuneSelf {
		return asciiClass[b], 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && n == 1 {
		return classOther, 1
	}
	return classifyRune(r), n
}

// scanClass returns the end of the run of characters of class c that
// starts at s[i].
func scanClass(s string, i int, c charClass) int {
	for i < len(s) {
		ci, n := classAt(s, i)
		if ci != c {
			break
		}
		i += n
	}
	return i
}

// nextPiece returns the end of the pre-token that starts at s[i], i < len(s).
func nextPiece(s string, i int) int {
	// 's|'t|'re|'ve|'m|'ll|'d (case-sensitive, as in GPT-2).
	if s[i] == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v':
			if i+2 < len(s) && s[i+2] == 'e' {
				return i + 3
			}
		case 'l':
			if i+2 < len(s) && s[i+2] == 'l' {
				return i + 3
			}
		}
	}
	c, n := classAt(s, i)
	if c != classSpace {
		// \p{L}+, \p{N}+ or [^\s\p{L}\p{N}]+ without the leading space.
		return scanClass(s, i+n, c)
	}
	// ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' with the leading space:
	// a single ASCII space joins the non-space run that follows it.
	if s[i] == ' ' && i+1 < len(s) {
		if c2, n2 := classAt(s, i+1); c2 != classSpace {
			return scanClass(s, i+1+n2, c2)
		}
	}
	// \s+(?!\S) then \s+: take the whole whitespace run if it reaches the
	// end of the text; otherwise leave its last character to start the next
	// pre-token, unless the run is a single character.
	last, j := i, i+n
	for j < len(s) {
		cj, nj := classAt(s, j)
		if cj != classSpace {
			break
		}
		last = j
		j += nj
	}
	if j == len(s) || last == i {
		return j
	}
	return last
}

// appendPieces appends the pre-tokens of s to dst; they concatenate to s.
func appendPieces(dst []string, s string) []string {
	for i := 0; i < len(s); {
		j := nextPiece(s, i)
		dst = append(dst, s[i:j])
		i = j
	}
	return dst
}
