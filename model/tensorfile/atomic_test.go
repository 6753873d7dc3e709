package tensorfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFileAtomic: a new file is readable by others (0644, not the
// temporary file's 0600), a replaced file keeps its mode, and a failed fill
// leaves the earlier file whole and no temporary file behind.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.bin")
	write := func(s string) error {
		return WriteFileAtomic(path, func(w io.Writer) error { _, err := io.WriteString(w, s); return err })
	}
	check := func(want string, mode fs.FileMode) {
		t.Helper()
		got, err := os.ReadFile(path)
		st, serr := os.Stat(path)
		if err != nil || serr != nil || string(got) != want || st.Mode().Perm() != mode {
			t.Fatalf("%s: %q mode %v (%v, %v), want %q mode %v", path, got, st.Mode().Perm(), err, serr, want, mode)
		}
	}
	if err := write("one"); err != nil {
		t.Fatal(err)
	}
	check("one", 0o644)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := write("two"); err != nil {
		t.Fatal(err)
	}
	check("two", 0o640)
	boom := errors.New("boom")
	if err := WriteFileAtomic(path, func(w io.Writer) error { io.WriteString(w, "partial"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("a failed fill: %v", err)
	}
	check("two", 0o640)
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 1 {
		t.Fatalf("files left: %v", names)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "b.bin"), func(io.Writer) error { return nil }); err == nil {
		t.Fatal("a missing directory: no error")
	}
}
