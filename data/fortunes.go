package data

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// fortuneCandidates reads the fortune files in dir (the regular files
// without a dot in their name), decoded by text, and returns each fortune
// as a candidate with id pkg/FILE/NNNN.
func fortuneCandidates(dir, pkg string, text func([]byte) string) ([]candidate, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []candidate
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.Contains(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		for i, f := range SplitFortunes(text(b)) {
			out = append(out, textCandidate(fmt.Sprintf("%s/%s/%04d", pkg, e.Name(), i+1), f))
		}
	}
	return out, nil
}

// SplitFortunes splits a fortune cookie file into its fortunes: they are
// separated by lines holding only "%"; empty ones are dropped.
func SplitFortunes(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var out []string
	var cur []string
	flush := func() {
		if t := strings.Trim(strings.Join(cur, "\n"), "\n"); strings.TrimSpace(t) != "" {
			out = append(out, t)
		}
		cur = cur[:0]
	}
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimRight(l, " \t") == "%" {
			flush()
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return out
}
