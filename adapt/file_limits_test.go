package adapt

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// heapAllocs returns the bytes the process has allocated so far.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestReadRefusesHugeHiddenList: a hyper adapter's metadata of a few
// hundred KB can list hundreds of thousands of hidden widths; Read built
// the name and shape of the two tensors each implies (about 170 bytes a
// JSON byte) before it compared their count with the file's. It must
// refuse the list first, naming the counts, in memory proportional to the
// file.
func TestReadRefusesHugeHiddenList(t *testing.T) {
	base, _ := tinyBase(t, tinyCfg, 1)
	a := testAdapters(base, rand.New(rand.NewPCG(3, 4)))[2] // hyper, hidden [5 4]
	m := a.Meta
	m.Hidden = make([]int, 300_000)
	for i := range m.Hidden {
		m.Hidden[i] = 1
	}
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ts := make([]tensorfile.Tensor, len(a.Tensors))
	for i, h := range a.Tensors {
		ts[i] = gpu.Must(tensorfile.FromFloat32(h.Name, tensorfile.F32, h.Shape, h.Data))
	}
	var b bytes.Buffer
	if err := tensorfile.WriteSafetensors(&b, ts, map[string]string{formatKey: formatValue, metaKey: string(js)}); err != nil {
		t.Fatal(err)
	}
	before := heapAllocs()
	_, err = Read(bytes.NewReader(b.Bytes()), int64(b.Len()), base)
	got := heapAllocs() - before
	if err == nil || !strings.Contains(err.Error(), "300000 hidden") {
		t.Fatalf("err = %v, want one naming the 300000 hidden widths", err)
	}
	t.Logf("reading a %d-byte adapter allocated %d bytes", b.Len(), got)
	if bound := 1<<20 + 128*uint64(b.Len()); got > bound { // about 40x; 830x before the fix
		t.Fatalf("reading a %d-byte adapter allocated %d bytes (bound %d)", b.Len(), got, bound)
	}
}
