package adaptrun

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeWindowsJSON gzips js into a windows file in a temporary directory.
func writeWindowsJSON(t *testing.T, js string) string {
	t.Helper()
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	if _, err := z.Write([]byte(js)); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "w.json.gz")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadWindowsRefusesInconsistentFiles: a windows file whose header
// states an impossible vocabulary (negative, or beyond int32 token ids:
// `adapt cache` allocates a prior of that many values before it sees the
// model), a negative byte count (bits per byte silently wrong), or windows
// whose domain is missing from the report order (Prepare counts them under
// the first domain) is refused with an error naming the fault.
func TestLoadWindowsRefusesInconsistentFiles(t *testing.T) {
	const head = `{"format":"chameleon-adapt-windows/1","t":3,"prompt":1,`
	win := `{"tokens":[1,2,3,4],"domain":"a","bytes":3}`
	cases := []struct{ name, js, want string }{
		{"negative vocab", head + `"roles":{"a":"adapt"},"order":["a"],"vocab":-1}`, "vocabulary"},
		{"zero vocab", head + `"roles":{"a":"adapt"},"order":["a"],"vocab":0}`, "vocabulary"},
		{"huge vocab", head + `"roles":{"a":"adapt"},"order":["a"],"vocab":1099511627776}`, "vocabulary"},
		{"negative bytes", head + `"roles":{"a":"adapt"},"order":["a"],"vocab":5,"splits":{"test":[{"tokens":[1,2,3,4],"domain":"a","bytes":-7}]}}`, "bytes"},
		{"domain not in order", head + `"roles":{"a":"adapt","b":"adapt"},"order":["a"],"vocab":5,"splits":{"test":[` + win + `,{"tokens":[1,2,3,4],"domain":"b","bytes":3}]}}`, `"b"`},
		{"order without role", head + `"roles":{"a":"adapt"},"order":["a","c"],"vocab":5,"splits":{"test":[` + win + `]}}`, `"c"`},
		{"order twice", head + `"roles":{"a":"adapt"},"order":["a","a"],"vocab":5,"splits":{"test":[` + win + `]}}`, "twice"},
		{"unknown role", head + `"roles":{"a":"adapt","b":"pretrian"},"order":["a","b"],"vocab":5,"splits":{"test":[` + win + `]}}`, "pretrian"},
		{"t overflows", `{"format":"chameleon-adapt-windows/1","t":9223372036854775807,"prompt":1,"roles":{"a":"adapt"},"order":["a"],"vocab":5}`, "9223372036854775807"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := LoadWindows(writeWindowsJSON(t, c.js))
			if err == nil {
				t.Fatalf("accepted: vocab %d, order %v, roles %v, splits %v", w.Vocab, w.Order, w.Roles, w.Splits)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %s", err, c.want)
			}
		})
	}
	ok := head + `"roles":{"a":"adapt","p":"pretrain","h":"heldout"},"order":["a","p","h"],"vocab":5,"splits":{"test":[` + win + `]}}`
	if _, err := LoadWindows(writeWindowsJSON(t, ok)); err != nil {
		t.Fatalf("a consistent file: %v", err)
	}
}
