package adaptrun

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzLoadWindows feeds LoadWindows arbitrary JSON (gzipped as the file
// is): it must return an error or windows that pass its own checks, never
// panic.
func FuzzLoadWindows(f *testing.F) {
	f.Add([]byte(`{"format":"chameleon-adapt-windows/1","t":3,"prompt":1,"roles":{"a":"adapt"},"order":["a"],"vocab":5,"splits":{"train":[{"tokens":[1,2,3,4],"domain":"a","bytes":3}]}}`))
	f.Add([]byte(`{"format":"chameleon-adapt-windows/1","t":3,"prompt":5}`))
	f.Add([]byte(`{"format":"chameleon-adapt-windows/1","t":2,"prompt":1,"vocab":1,"splits":{"x":[{"tokens":[0,0,-1],"domain":"b"}]}}`))
	f.Add([]byte(`[]`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, js []byte) {
		var b bytes.Buffer
		z := gzip.NewWriter(&b)
		_, _ = z.Write(js)
		_ = z.Close()
		path := filepath.Join(dir, "w.json.gz")
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		w, err := LoadWindows(path)
		if err != nil {
			return
		}
		if w.Vocab < 1 || w.T < 2 || w.Prompt < 1 || w.Prompt >= w.T || len(w.Order) != len(w.Roles) {
			t.Fatalf("accepted vocab %d, t %d, prompt %d, order %q for roles %v", w.Vocab, w.T, w.Prompt, w.Order, w.Roles)
		}
		for split, ws := range w.Splits {
			for i, x := range ws {
				if x.Bytes < 0 || !slices.Contains(w.Order, x.Domain) {
					t.Fatalf("%s window %d: %d bytes of domain %q accepted for order %q", split, i, x.Bytes, x.Domain, w.Order)
				}
				if len(x.Tokens) != w.T+1 {
					t.Fatalf("%s window %d: %d tokens accepted for T=%d", split, i, len(x.Tokens), w.T)
				}
				for _, id := range x.Tokens {
					if id < 0 || int(id) >= w.Vocab {
						t.Fatalf("%s window %d: token %d accepted for a vocabulary of %d", split, i, id, w.Vocab)
					}
				}
			}
		}
	})
}
