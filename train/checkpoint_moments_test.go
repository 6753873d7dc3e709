package train

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// TestResumeRefusesBadMoments: an optimizer file whose moment has another
// shape with as many values (transposed), a value that is not finite, or a
// negative second moment is refused on resume, naming the tensor; the
// untouched file resumes.
func TestResumeRefusesBadMoments(t *testing.T) {
	dir := t.TempDir()
	o, _ := tinyRun(t, dir, 2)
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, checkpointDir, optimizerFile)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tensorfile.ReadSafetensors(bytes.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	// The first matrix's moments: a shape of two sizes can be transposed.
	var key string
	for _, ti := range f.Tensors {
		if len(ti.Shape) == 2 && ti.Shape[0] != ti.Shape[1] && strings.HasPrefix(ti.Name, "v.") {
			key = ti.Name
			break
		}
	}
	if key == "" {
		t.Fatal("no rectangular second moment in the checkpoint")
	}
	rewrite := func(edit func(name string, shape []int, d []float32) []int) {
		t.Helper()
		var ts []tensorfile.Tensor
		for _, ti := range f.Tensors {
			d, err := f.Float32(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			shape := slices.Clone(ti.Shape)
			if ti.Name == key {
				shape = edit(ti.Name, shape, d)
			}
			x, err := tensorfile.FromFloat32(ti.Name, tensorfile.F32, shape, d)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, x)
		}
		if err := tensorfile.WriteFileAtomic(path, func(w io.Writer) error {
			return tensorfile.WriteSafetensors(w, ts, f.Metadata)
		}); err != nil {
			t.Fatal(err)
		}
	}
	for name, edit := range map[string]func(string, []int, []float32) []int{
		"transposed": func(_ string, s []int, _ []float32) []int { return []int{s[1], s[0]} },
		"NaN":        func(_ string, s []int, d []float32) []int { d[1] = float32(math.NaN()); return s },
		"negative":   func(_ string, s []int, d []float32) []int { d[2] = -1e-3; return s },
	} {
		rewrite(edit)
		o.Resume = true
		if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s %s: resume returned %v, want a refusal naming it", name, key, err)
		}
	}
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), o); err != nil {
		t.Errorf("the untouched checkpoint: %v", err)
	}
}
