package data

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rWriter writes R's XDR serialisation (format 3), the inverse of rReader
// for the few types the tests need; it is written from the format as
// serialize.c defines it, not by calling R.
type rWriter struct{ bytes.Buffer }

func (w *rWriter) int(v int32) { binary.Write(&w.Buffer, binary.BigEndian, v) }

func (w *rWriter) header() {
	w.WriteString("X\n")
	w.int(3)        // format version
	w.int(0x040201) // written by R 4.2.1
	w.int(0x030500) // readable by R >= 3.5.0
	w.int(5)        // native encoding name
	w.WriteString("UTF-8")
}

// charsxp writes one CHARSXP; levels carries the encoding bits (1<<3 UTF-8,
// 1<<2 Latin-1, 1<<6 ASCII); na writes NA_character_.
func (w *rWriter) charsxp(s string, levels int32, na bool) {
	w.int(rChar | levels<<12)
	if na {
		w.int(-1)
		return
	}
	w.int(int32(len(s)))
	w.WriteString(s)
}

// names writes an attribute pairlist holding names = c(...).
func (w *rWriter) names(names ...string) {
	w.int(rList | 1<<10) // LISTSXP with a tag
	w.int(rSym)
	w.charsxp("names", 1<<6, false)
	w.strsxp(names, 0)
	w.int(rNilValue)
}

func (w *rWriter) strsxp(s []string, flags int32) {
	w.int(rStr | flags)
	w.int(int32(len(s)))
	for _, v := range s {
		w.charsxp(v, 1<<3, false)
	}
}

func (w *rWriter) intsxp(v ...int32) {
	w.int(rInt)
	w.int(int32(len(v)))
	for _, x := range v {
		w.int(x)
	}
}

// rdbRecord wraps a serialisation as an .rdb record: 4-byte big-endian
// uncompressed length, then a zlib stream.
func rdbRecord(ser []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(ser)))
	zw := zlib.NewWriter(&b)
	zw.Write(ser)
	zw.Close()
	return b.Bytes()
}

// writeLazyLoadDB writes base.rdb and base.rdx holding the given character
// vectors, as R's makeLazyLoadDB does for a package's data.
func writeLazyLoadDB(t *testing.T, base string, names []string, vectors [][]string) {
	t.Helper()
	var rdb bytes.Buffer
	var pos [][2]int32
	for _, v := range vectors {
		var w rWriter
		w.header()
		w.strsxp(v, 0)
		rec := rdbRecord(w.Bytes())
		pos = append(pos, [2]int32{int32(rdb.Len()), int32(len(rec))})
		rdb.Write(rec)
	}
	// list(variables = list(<name> = c(off, len), ...), references = list(), compressed = TRUE)
	var w rWriter
	w.header()
	w.int(rVec | 1<<9)
	w.int(3)
	w.int(rVec | 1<<9)
	w.int(int32(len(names)))
	for _, p := range pos {
		w.intsxp(p[0], p[1])
	}
	w.names(names...)
	w.int(rVec)
	w.int(0)
	w.int(rLgl)
	w.int(1)
	w.int(1)
	w.names("variables", "references", "compressed")
	var rdx bytes.Buffer
	gz := gzip.NewWriter(&rdx)
	gz.Write(w.Bytes())
	gz.Close()
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".rdb", rdb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".rdx", rdx.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLazyLoadDB(t *testing.T) {
	base := filepath.Join(t.TempDir(), "Rdata")
	emma := []string{"EMMA", "", "CHAPTER I", "", "Emma Woodhouse, handsome, clever, and rich,", "CHAPTER II", "Mr. Weston was a native of Highbury"}
	writeLazyLoadDB(t, base, []string{"emma", "persuasion"}, [][]string{emma, {"PERSUASION", "Chapter 1", "Sir Walter Elliot"}})
	vars, err := ReadLazyLoadDB(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) != 2 || vars[0].Name != "emma" || vars[1].Name != "persuasion" {
		t.Fatalf("variables: %+v", vars)
	}
	got, ok := vars[0].Value.Strings()
	if !ok || strings.Join(got, "|") != strings.Join(emma, "|") {
		t.Fatalf("emma: %q", got)
	}
	ch := SplitChapters(got)
	if len(ch) != 2 || !strings.HasPrefix(ch[0], "EMMA\n\nCHAPTER I") || !strings.HasPrefix(ch[1], "CHAPTER II") {
		t.Fatalf("chapters: %q", ch)
	}
}

func TestUnserializeEncodingsAndRefs(t *testing.T) {
	var w rWriter
	w.header()
	// list(c("caf\xe9" latin-1, NA, "naïve" UTF-8), quote(x), quote(x)): the second symbol is a reference.
	w.int(rVec)
	w.int(3)
	w.int(rStr)
	w.int(3)
	w.charsxp("caf\xe9", 1<<2, false)
	w.charsxp("", 0, true)
	w.charsxp("naïve", 1<<3, false)
	w.int(rSym)
	w.charsxp("x", 1<<6, false)
	w.int(rRef | 1<<8) // reference 1: the symbol above
	o, err := UnserializeR(w.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	s, _ := o.Items[0].Strings()
	if s[0] != "café" || !o.Items[0].Items[1].NA || s[2] != "naïve" {
		t.Errorf("strings: %q", s)
	}
	if o.Items[1].Str != "x" || o.Items[2] != o.Items[1] {
		t.Errorf("symbol and its reference: %+v %+v", o.Items[1], o.Items[2])
	}
	// Every truncation is an error, never a panic.
	b := w.Bytes()
	for n := range len(b) {
		if _, err := UnserializeR(b[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
}

func TestRdbRecordErrors(t *testing.T) {
	var w rWriter
	w.header()
	w.strsxp([]string{"a"}, 0)
	rec := rdbRecord(w.Bytes())
	if _, err := RdbRecord(rec, 0, int64(len(rec)), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := RdbRecord(rec, 0, int64(len(rec))+1, 1); err == nil {
		t.Error("record past the end: no error")
	}
	bad := append([]byte(nil), rec...)
	bad[3]++ // the length header no longer matches
	if _, err := RdbRecord(bad, 0, int64(len(bad)), 1); err == nil || !strings.Contains(err.Error(), "header says") {
		t.Errorf("wrong length header: %v", err)
	}
}
