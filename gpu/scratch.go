package gpu

// Scratch is the tensors one piece of work allocates for itself and frees
// together when it ends, on whatever path it ends:
//
//	sc := gpu.Scratch{B: be}
//	defer sc.Free()
//	t, err := sc.Alloc(gpu.F32, n, c)
type Scratch struct {
	B  Backend
	ts []Tensor
}

// Alloc is B.Alloc, the tensor kept for Free.
func (s *Scratch) Alloc(dt DType, shape ...int) (Tensor, error) {
	t, err := s.B.Alloc(dt, shape...)
	if err == nil {
		s.ts = append(s.ts, t)
	}
	return t, err
}

// Free frees every tensor Alloc gave, last first; the Scratch can be used
// again.
func (s *Scratch) Free() {
	for i := len(s.ts) - 1; i >= 0; i-- {
		s.B.Free(s.ts[i])
	}
	s.ts = s.ts[:0]
}
