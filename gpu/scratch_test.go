package gpu_test

import (
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// freeCounter is a backend that records the tensors freed.
type freeCounter struct {
	gpu.Backend
	freed []gpu.Tensor
}

func (f *freeCounter) Free(t gpu.Tensor) {
	f.freed = append(f.freed, t)
	f.Backend.Free(t)
}

// TestScratch: Free frees exactly the tensors Alloc gave, last first, a
// failed Alloc keeps nothing, and the Scratch serves again after Free.
func TestScratch(t *testing.T) {
	be := &freeCounter{Backend: ref.New()}
	sc := gpu.Scratch{B: be}
	a, err := sc.Alloc(gpu.F32, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sc.Alloc(gpu.I32, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Alloc(gpu.Q8_0, 2, 31); err == nil {
		t.Fatal("Q8_0 rows of 31 weights allocated")
	}
	sc.Free()
	if len(be.freed) != 2 || be.freed[0] != b || be.freed[1] != a {
		t.Fatalf("freed %v, want [%v %v]", be.freed, b, a)
	}
	if _, err := sc.Alloc(gpu.F32, 1); err != nil {
		t.Fatal(err)
	}
	sc.Free()
	if len(be.freed) != 3 {
		t.Fatalf("%d frees after reuse, want 3", len(be.freed))
	}
}
