package data

import (
	"html"
	"strings"
	"unicode"
)

// HTMLToText turns an HTML page into plain text without a parser
// dependency: comments, <!DOCTYPE>, <head>, <script> and <style> are
// dropped, as is anything inside an element whose class is "navheader" or
// "navfooter" (DocBook's Prev/Next bars, repeated on every page of the ABS
// guide); block elements end lines (<p>, headings, tables, lists and <pre>
// leave a blank line); white space is collapsed outside <pre> and kept inside
// it; entities are decoded. s must be UTF-8 (invalid bytes are dropped).
// The result still goes through Clean.
//
// (Over 80 lines: one tokenizer loop whose tag cases share the output state
// (pre depth, pending line ends).)
func HTMLToText(s string) string {
	s = strings.ToValidUTF8(s, "")
	var b strings.Builder
	pre := 0       // depth of <pre>
	skip := ""     // tag name of the element being skipped
	skipDepth := 0 // nesting of skip inside itself
	pendingSpace := false
	newline := func(n int) { // end the current line; n = 2 leaves a blank line
		pendingSpace = false
		cur := b.String()
		have := len(cur) - len(strings.TrimRight(cur, "\n"))
		if len(cur) == 0 {
			return
		}
		for ; have < n; have++ {
			b.WriteByte('\n')
		}
	}
	for len(s) > 0 {
		lt := strings.IndexByte(s, '<')
		if lt < 0 {
			lt = len(s)
		}
		if text := s[:lt]; text != "" && skip == "" {
			text = html.UnescapeString(text)
			if pre > 0 {
				b.WriteString(text)
			} else {
				for _, r := range text {
					if unicode.IsSpace(r) {
						pendingSpace = b.Len() > 0 && !strings.HasSuffix(b.String(), "\n")
						continue
					}
					if pendingSpace {
						b.WriteByte(' ')
						pendingSpace = false
					}
					b.WriteRune(r)
				}
			}
		}
		s = s[lt:]
		if s == "" {
			break
		}
		// A comment, a declaration, or a tag.
		if strings.HasPrefix(s, "<!--") {
			end := strings.Index(s, "-->")
			if end < 0 {
				break
			}
			s = s[end+3:]
			continue
		}
		gt := strings.IndexByte(s, '>')
		if gt < 0 {
			break
		}
		tag := s[1:gt]
		s = s[gt+1:]
		if strings.HasPrefix(tag, "!") || strings.HasPrefix(tag, "?") {
			continue
		}
		closing := strings.HasPrefix(tag, "/")
		tag = strings.TrimPrefix(tag, "/")
		name := tag
		if i := strings.IndexAny(tag, " \t\r\n/"); i >= 0 {
			name = tag[:i]
		}
		name = strings.ToLower(name)
		if skip != "" {
			if name == skip {
				if closing {
					skipDepth--
					if skipDepth == 0 {
						skip = ""
					}
				} else {
					skipDepth++
				}
			}
			continue
		}
		if !closing {
			switch name {
			case "head", "script", "style", "title":
				skip, skipDepth = name, 1
				continue
			}
			if c := attr(tag, "class"); strings.EqualFold(c, "navheader") || strings.EqualFold(c, "navfooter") {
				skip, skipDepth = name, 1
				continue
			}
		}
		switch name {
		case "pre":
			newline(2)
			if closing {
				if pre > 0 {
					pre--
				}
			} else {
				pre++
			}
		case "p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "dl", "blockquote", "hr":
			newline(2)
		case "br", "div", "tr", "li", "dt", "dd":
			newline(1)
		case "td", "th":
			pendingSpace = b.Len() > 0
		}
	}
	return b.String()
}

// attr returns the value of attribute key in the inside of a tag, or "".
func attr(tag, key string) string {
	low := strings.ToLower(tag)
	i := strings.Index(low, key+"=")
	if i < 0 {
		return ""
	}
	v := tag[i+len(key)+1:]
	if v == "" {
		return ""
	}
	if q := v[0]; q == '"' || q == '\'' {
		if end := strings.IndexByte(v[1:], q); end >= 0 {
			return v[1 : 1+end]
		}
		return v[1:]
	}
	if end := strings.IndexAny(v, " \t\r\n>"); end >= 0 {
		return v[:end]
	}
	return v
}
