package cluster

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

func TestCentroidsRoundTripAndAssign(t *testing.T) {
	rng := newRng(t)
	const n, c, k = 129, 64, 7
	xs, _ := blobs(rng, n, c, k, 0.5)
	for _, ops := range bothOps(t) {
		x := upload(t, ops, xs, n, c)
		res, err := KMeans(ops, x, Config{K: k, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "centroids.safetensors")
		if err := res.Centroids.SaveFile(path); err != nil {
			t.Fatal(err)
		}
		back, err := LoadCentroids(path)
		if err != nil {
			t.Fatal(err)
		}
		if back.K != k || back.C != c || !slices.Equal(back.Data, res.Centroids.Data) ||
			!slices.Equal(back.Meta.Sizes, res.Sizes) || back.Meta.Seed != 3 || back.Meta.Feature != FeatureKind ||
			back.Meta.Iterations != res.Iterations || back.Meta.Points != n {
			t.Fatalf("round trip: %+v\nwant %+v", back.Meta, res.Centroids.Meta)
		}
		// Online assignment of the training points reproduces k-means'
		// final assignment, on the host and with the kernel.
		host, err := back.Assign(xs)
		if err != nil {
			t.Fatal(err)
		}
		dev, err := back.AssignOn(ops, x)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Converged || !slices.Equal(dev, res.Assign) || !slices.Equal(host, res.Assign) {
			t.Fatalf("%s: converged %v; online assignments differ from k-means':\nkmeans %v\ndevice %v\nhost   %v",
				ops.Name(), res.Converged, res.Assign, dev, host)
		}
		ops.Free(x)
	}
}

// TestNearest: each row's nearest centroids come in order of distance,
// the first is Assign's, all K when m is larger, and the rule of ties
// (the lower index first) holds for a point equidistant from two.
func TestNearest(t *testing.T) {
	rng := newRng(t)
	const n, c, k = 57, 5, 6
	xs, _ := blobs(rng, n, c, k, 0.5)
	cs := &Centroids{K: k, C: c, Data: xs[:k*c]}
	as, err := cs.Assign(xs)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []int{1, 3, k, k + 4} {
		near, err := cs.Nearest(xs, m)
		if err != nil {
			t.Fatal(err)
		}
		for i, nb := range near {
			x := xs[i*c : (i+1)*c]
			if len(nb) != min(m, k) || nb[0] != as[i] {
				t.Fatalf("m=%d, row %d: %v (Assign %d)", m, i, nb, as[i])
			}
			for j := 1; j < len(nb); j++ {
				if sqDist(x, cs.Row(nb[j-1])) > sqDist(x, cs.Row(nb[j])) || slices.Contains(nb[:j], nb[j]) {
					t.Fatalf("m=%d, row %d: %v not in order of distance, or repeated", m, i, nb)
				}
			}
		}
	}
	tie := &Centroids{K: 3, C: 1, Data: []float32{2, 0, -2}}
	if near, err := tie.Nearest([]float32{1, -1}, 2); err != nil || !slices.Equal(near[0], []int{0, 1}) || !slices.Equal(near[1], []int{1, 2}) {
		t.Fatalf("ties: %v %v", near, err)
	}
	if _, err := tie.Nearest([]float32{1}, 0); err == nil {
		t.Error("Nearest with m = 0: no error")
	}
	if _, err := tie.Nearest([]float32{float32(nan())}, 1); err == nil {
		t.Error("Nearest of a NaN feature: no error")
	}
}

func TestCentroidsErrors(t *testing.T) {
	cs := &Centroids{K: 2, C: 3, Data: []float32{1, 0, 0, 0, 1, 0}}
	if _, err := cs.Assign([]float32{1, 2}); err == nil {
		t.Error("Assign of 2 values with C = 3: no error")
	}
	if _, err := cs.Assign([]float32{1, 2, float32(nan())}); err == nil {
		t.Error("Assign of a NaN feature: no error")
	}
	if got, _ := cs.Assign([]float32{0.5, 0.5, 0, 0.2, 0.9, 0}); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("Assign: %v, want [0 1] (tie to the lower index, then the nearer)", got)
	}
	var b bytes.Buffer
	if err := cs.Save(&b); err != nil {
		t.Fatal(err)
	}
	good := b.Bytes()
	if _, err := ReadCentroids(bytes.NewReader(good[:len(good)-4]), int64(len(good)-4)); err == nil {
		t.Error("truncated file: no error")
	}
	write := func(ts []tensorfile.Tensor, meta map[string]string) []byte {
		var w bytes.Buffer
		if err := tensorfile.WriteSafetensors(&w, ts, meta); err != nil {
			t.Fatal(err)
		}
		return w.Bytes()
	}
	vec, _ := tensorfile.FromFloat32(TensorName, tensorfile.F32, []int{6}, cs.Data)
	other, _ := tensorfile.FromFloat32("weights", tensorfile.F32, []int{2, 3}, cs.Data)
	bad, _ := tensorfile.FromFloat32(TensorName, tensorfile.F32, []int{2, 3}, []float32{1, 0, 0, 0, float32(nan()), 0})
	ok, _ := tensorfile.FromFloat32(TensorName, tensorfile.F32, []int{2, 3}, cs.Data)
	for _, tc := range []struct {
		file []byte
		want string
	}{
		{write([]tensorfile.Tensor{other}, nil), "no tensor"},
		{write([]tensorfile.Tensor{vec}, nil), "want (K, C)"},
		{write([]tensorfile.Tensor{bad}, nil), "non-finite"},
		{write([]tensorfile.Tensor{ok}, map[string]string{MetaKey: "{"}), "metadata"},
		{write([]tensorfile.Tensor{ok}, map[string]string{MetaKey: `{"sizes":[1]}`}), "cluster sizes"},
	} {
		_, err := ReadCentroids(bytes.NewReader(tc.file), int64(len(tc.file)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
	if c, err := ReadCentroids(bytes.NewReader(write([]tensorfile.Tensor{ok}, nil)), int64(len(write([]tensorfile.Tensor{ok}, nil)))); err != nil || c.K != 2 {
		t.Errorf("file without metadata: %v", err)
	}
}
