package adapt

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/chameleon-llm/chameleon/model"
)

// FuzzReadAdapter: any bytes give an adapter or an error, never a panic;
// what Read accepts validates and survives Write and Read unchanged.
// Seeds: every kind of the file tests, and a gated hyper adapter with a
// staged self-check.
func FuzzReadAdapter(f *testing.F) {
	base, err := BaseOf(tinyCfg, model.RandomInit(tinyCfg, 1))
	if err != nil {
		f.Fatal(err)
	}
	as := testAdapters(base, rand.New(rand.NewPCG(3, 4)))
	staged := *as[0]
	staged.Meta.SelfCheck, staged.Meta.CheckStride, staged.Meta.CheckMargin = true, 4, 0.2
	for _, a := range append(as, &staged) {
		var b bytes.Buffer
		if err := a.Write(&b); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Read(bytes.NewReader(data), int64(len(data)), base)
		if err != nil {
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("Read accepted an adapter that does not validate: %v", err)
		}
		var out bytes.Buffer
		if err := a.Write(&out); err != nil {
			t.Fatalf("an accepted adapter does not write: %v", err)
		}
		back, err := Read(bytes.NewReader(out.Bytes()), int64(out.Len()), base)
		if err != nil {
			t.Fatalf("an accepted adapter, written, does not read back: %v", err)
		}
		if !reflect.DeepEqual(a.Meta, back.Meta) || len(a.Tensors) != len(back.Tensors) {
			t.Fatalf("round trip changed the adapter: %+v against %+v", a.Meta, back.Meta)
		}
	})
}
