package gpu_test

import (
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// foreign is a backend that is neither WebGPU nor a host backend.
type foreign struct{ gpu.Backend }

func (foreign) Name() string { return "foreign" }

func TestSelect(t *testing.T) {
	pick := func(b gpu.Backend) (string, error) {
		return gpu.Select(b,
			func(*gpu.WebGPU) string { return "webgpu" },
			func(h gpu.Host) string { return "host " + h.Name() })
	}
	if got, err := pick(ref.New()); err != nil || got != "host "+ref.New().Name() {
		t.Errorf("reference backend: %q, %v; want its host implementation", got, err)
	}
	if got, err := pick(foreign{}); err == nil || !strings.Contains(err.Error(), "foreign") {
		t.Errorf("foreign backend: %q, %v; want an error naming it", got, err)
	}
}

// TestHostAliases: a host backend's slices are the tensor's values.
func TestHostAliases(t *testing.T) {
	var h gpu.Host = ref.New()
	x := gpu.Must(h.Alloc(gpu.F32, 3))
	if err := h.Write(x, []float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	h.HostF32(x)[1] = 7
	if got, _ := h.ReadF32(x); got[1] != 7 || got[2] != 3 {
		t.Errorf("after writing the host slice the tensor reads %v", got)
	}
	ids := gpu.Must(h.Alloc(gpu.I32, 2))
	if err := h.Write(ids, []int32{4, 5}); err != nil {
		t.Fatal(err)
	}
	if got := h.HostI32(ids); got[0] != 4 || got[1] != 5 {
		t.Errorf("HostI32 = %v, want [4 5]", got)
	}
}
