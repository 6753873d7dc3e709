package cluster

import (
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
)

// pairOps runs every kernel on both the WebGPU ops and the reference,
// compares the outputs, then copies the reference's into the WebGPU tensor,
// so a whole k-means run checks the kernels at every step of its real
// trajectory without float rounding steering the two runs apart. Reads
// return the reference's values.
type pairOps struct {
	// Backend is nil: clustering calls only the memory ops (defined below)
	// and its own kernels, so a base op reached through here is a bug and
	// panics.
	gpu.Backend
	t    *testing.T
	g    *GPUOps
	r    *RefOps
	runs map[string]int // kernel calls compared
}

type pairT struct{ r, g gpu.Tensor }

func (p pairT) Shape() []int     { return p.r.Shape() }
func (p pairT) DType() gpu.DType { return p.r.DType() }

func pt(x gpu.Tensor) pairT { return x.(pairT) }

func (o *pairOps) Name() string { return "pair(" + o.g.Name() + ", " + o.r.Name() + ")" }

func (o *pairOps) Alloc(dt gpu.DType, shape ...int) (gpu.Tensor, error) {
	r, err := o.r.Alloc(dt, shape...)
	if err != nil {
		return nil, err
	}
	g, err := o.g.Alloc(dt, shape...)
	if err != nil {
		return nil, err
	}
	return pairT{r, g}, nil
}

func (o *pairOps) Write(x gpu.Tensor, data any) error {
	if err := o.r.Write(pt(x).r, data); err != nil {
		return err
	}
	return o.g.Write(pt(x).g, data)
}

func (o *pairOps) ReadF32(x gpu.Tensor) ([]float32, error) { return o.r.ReadF32(pt(x).r) }
func (o *pairOps) ReadI32(x gpu.Tensor) ([]int32, error)   { return o.r.ReadI32(pt(x).r) }
func (o *pairOps) Free(x gpu.Tensor)                       { o.r.Free(pt(x).r); o.g.Free(pt(x).g) }

// sync compares a float output and hands the reference's values to the GPU.
func (o *pairOps) syncF32(what string, x gpu.Tensor, atol, rtol float64) {
	o.t.Helper()
	want, _ := o.r.ReadF32(pt(x).r)
	got, err := o.g.ReadF32(pt(x).g)
	if err != nil {
		o.t.Fatalf("%s: %v", what, err)
	}
	if err := conformance.AllClose(got, want, atol, rtol); err != nil {
		o.t.Fatalf("%s (call %d): %v", what, o.runs[what], err)
	}
	if err := o.g.Write(pt(x).g, want); err != nil {
		o.t.Fatal(err)
	}
}

func (o *pairOps) Features(dst, wte, tokens, lengths gpu.Tensor) {
	o.r.Features(pt(dst).r, pt(wte).r, pt(tokens).r, pt(lengths).r)
	o.g.Features(pt(dst).g, pt(wte).g, pt(tokens).g, pt(lengths).g)
	o.runs["features"]++
	o.syncF32("features", dst, 2e-6, 2e-5)
}

func (o *pairOps) Assign(assign, dist, x, cents gpu.Tensor, label0 int, merge bool) {
	o.t.Helper()
	stored, _ := o.r.ReadF32(pt(dist).r)
	o.r.Assign(pt(assign).r, pt(dist).r, pt(x).r, pt(cents).r, label0, merge)
	o.g.Assign(pt(assign).g, pt(dist).g, pt(x).g, pt(cents).g, label0, merge)
	o.runs["assign"]++
	want, _ := o.r.ReadI32(pt(assign).r)
	got, err := o.g.ReadI32(pt(assign).g)
	if err != nil {
		o.t.Fatal(err)
	}
	xs, _ := o.r.ReadF32(pt(x).r)
	cs, _ := o.r.ReadF32(pt(cents).r)
	c := x.Shape()[1]
	for i := range got {
		if got[i] != want[i] {
			if !nearTie(xs, cs, c, i, int(got[i]), int(want[i]), label0, stored[i]) {
				o.t.Fatalf("assign (call %d): point %d: label %d, want %d", o.runs["assign"], i, got[i], want[i])
			}
			o.runs["near ties"]++
		}
	}
	if err := o.g.Write(pt(assign).g, want); err != nil {
		o.t.Fatal(err)
	}
	o.syncF32("dist", dist, 1e-5, 1e-5)
}

func (o *pairOps) Update(dst, x, prev, order, offsets, reseed gpu.Tensor) {
	o.r.Update(pt(dst).r, pt(x).r, pt(prev).r, pt(order).r, pt(offsets).r, pt(reseed).r)
	o.g.Update(pt(dst).g, pt(x).g, pt(prev).g, pt(order).g, pt(offsets).g, pt(reseed).g)
	o.runs["update"]++
	o.syncF32("update", dst, 1e-5, 1e-5)
}

var _ Ops = (*pairOps)(nil)
