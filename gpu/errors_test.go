package gpu

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

var (
	testOnce sync.Once
	testDev  *Device
	testErr  error
)

// device opens the test adapter; it fails (never skips) without one.
func device(t *testing.T) *WebGPU {
	t.Helper()
	testOnce.Do(func() { testDev, testErr = Open(Options{}) })
	if testErr != nil {
		t.Fatalf("no WebGPU device: %v", testErr)
	}
	return NewWebGPU(testDev)
}

func TestShaderValidationErrorNamesKernel(t *testing.T) {
	w := device(t)
	_, err := w.compile("broken_kernel", "@compute @workgroup_size(1) fn main() { let x: f32 = undefined_thing; }", 0, 0)
	if err == nil {
		t.Fatal("invalid WGSL compiled without error")
	}
	var ke *KernelError
	if !errors.As(err, &ke) || ke.Kernel != "broken_kernel" || !strings.Contains(err.Error(), "validation") {
		t.Fatalf("error does not name the kernel and the cause: %v", err)
	}
	// The device stays usable after a failed compile.
	a := Must(w.Alloc(F32, 4))
	c := Must(w.Alloc(F32, 4))
	if err := w.Write(a, []float32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	w.Add(c, a, a)
	got, err := w.ReadF32(c)
	if err != nil || got[3] != 8 {
		t.Fatalf("device unusable after a shader error: %v %v", got, err)
	}
	w.Free(a)
	w.Free(c)
}

func TestBufferOverDeviceLimit(t *testing.T) {
	w := device(t)
	huge := int(w.Limits.MaxBufferSize/4) + 1024
	if _, err := w.Alloc(F32, huge); err == nil || !strings.Contains(err.Error(), "maxBufferSize") {
		t.Fatalf("allocation over maxBufferSize: got %v, want an error naming the limit", err)
	}
}

func TestBindingOverLimitIsAnErrorNamingTheKernel(t *testing.T) {
	w := device(t)
	n := int(w.Limits.MaxStorageBufferBindingSize/4) + 64
	if uint64(n)*4 > w.Limits.MaxBufferSize {
		t.Skipf("adapter's maxBufferSize %d does not exceed its binding limit", w.Limits.MaxBufferSize)
	}
	a, err := w.Alloc(F32, n)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Free(a)
	c := Must(w.Alloc(F32, n))
	defer w.Free(c)
	w.Add(c, a, a) // Add does not split: its binding is over the limit
	err = w.Flush()
	var ke *KernelError
	if !errors.As(err, &ke) || ke.Kernel != "add" || !strings.Contains(err.Error(), "maxStorageBufferBindingSize") {
		t.Fatalf("got %v, want a KernelError for add naming maxStorageBufferBindingSize", err)
	}
	// Errors are reported once; the device keeps working.
	b := Must(w.Alloc(F32, 3))
	b2 := Must(w.Alloc(F32, 3))
	defer w.Free(b2)
	if err := w.Write(b, []float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	w.GELU(b2, b)
	if _, err := w.ReadF32(b2); err != nil {
		t.Fatalf("device unusable after a binding error: %v", err)
	}
	w.Free(b)
}

func TestWrongWriteIsAnError(t *testing.T) {
	w := device(t)
	a := Must(w.Alloc(F32, 5))
	defer w.Free(a)
	if err := w.Write(a, []float32{1, 2}); err == nil {
		t.Fatal("short write accepted")
	}
	if err := w.Write(a, []int32{1, 2, 3, 4, 5}); err == nil {
		t.Fatal("int data into an f32 tensor accepted")
	}
}

func TestShapeMismatchPanicsWithPrefix(t *testing.T) {
	w := device(t)
	a := Must(w.Alloc(F32, 4))
	b := Must(w.Alloc(F32, 5))
	defer w.Free(a)
	defer w.Free(b)
	expectPanic(t, "gpu: Add:", func() { w.Add(a, a, b) })
	c := Must(w.Alloc(F32, 4))
	defer w.Free(c)
	expectPanic(t, "gpu: kernel add: output binding 2 aliases input binding 0", func() { w.Add(a, a, c) })
}

func expectPanic(t *testing.T, prefix string, f func()) {
	t.Helper()
	defer func() {
		r := recover()
		if s, ok := r.(string); !ok || !strings.HasPrefix(s, prefix) {
			t.Fatalf("panic %v, want a message starting %q", r, prefix)
		}
	}()
	f()
}

func TestDeviceLostSurfacesAsError(t *testing.T) {
	// A separate device, so marking it lost does not disturb other tests.
	d, err := Open(Options{})
	if err != nil {
		t.Fatalf("no WebGPU device: %v", err)
	}
	defer d.Close()
	w := NewWebGPU(d)
	a := Must(w.Alloc(F32, 8))
	b := Must(w.Alloc(F32, 8))
	d.markLost(errors.New("wgpu: Device lost: simulated driver reset"))
	w.GELU(b, a)
	if err := w.Flush(); !errors.Is(err, ErrDeviceLost) {
		t.Fatalf("flush after loss: %v, want ErrDeviceLost", err)
	}
	if _, err := w.ReadF32(a); !errors.Is(err, ErrDeviceLost) {
		t.Fatalf("read after loss: %v, want ErrDeviceLost", err)
	}
	if _, err := w.Alloc(F32, 1<<20); !errors.Is(err, ErrDeviceLost) {
		t.Fatalf("alloc after loss: %v, want ErrDeviceLost", err)
	}
}

func TestAdapterSelection(t *testing.T) {
	device(t)
	if _, err := Open(Options{Adapter: "no-such-adapter-xyz"}); err == nil || !strings.Contains(err.Error(), "available") {
		t.Fatalf("unknown adapter name: %v, want an error listing the available adapters", err)
	}
	if _, err := Open(Options{Adapter: "99"}); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("adapter index out of range: %v", err)
	}
	d, err := Open(Options{Adapter: "0"})
	if err != nil {
		t.Fatalf("adapter 0: %v", err)
	}
	d.Close()
}

// TestNoAdapter runs this test binary again with the Vulkan loader pointed
// at no driver, and checks the error and its hint.
func TestNoAdapter(t *testing.T) {
	if os.Getenv("CHAMELEON_NO_ADAPTER_CHILD") == "1" {
		_, err := Open(Options{})
		if !errors.Is(err, ErrNoAdapter) {
			t.Fatalf("Open without drivers: %v, want ErrNoAdapter", err)
		}
		if !strings.Contains(err.Error(), "mesa-vulkan-drivers") {
			t.Fatalf("no install hint in %q", err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoAdapter$", "-test.v")
	cmd.Env = append(os.Environ(), "CHAMELEON_NO_ADAPTER_CHILD=1",
		"VK_ICD_FILENAMES=/nonexistent.json", "VK_DRIVER_FILES=/nonexistent.json")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestNoAdapter") {
		t.Fatalf("child run: %v\n%s", err, out)
	}
}

func TestProfileNamesKernels(t *testing.T) {
	w := device(t)
	if !w.HasTimestamp {
		t.Fatalf("adapter %s lacks timestamp-query", w.Info.Name)
	}
	a := Must(w.Alloc(F32, 1<<16))
	b := Must(w.Alloc(F32, 1<<16))
	defer w.Free(a)
	defer w.Free(b)
	if err := w.Write(a, make([]float32, 1<<16)); err != nil {
		t.Fatal(err)
	}
	if err := w.StartProfile(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		w.GELU(b, a)
		w.Add(a, b, b)
	}
	prof, err := w.StopProfile()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, k := range prof {
		calls[k.Kernel] = k.Calls
		if k.Total <= 0 {
			t.Errorf("kernel %s: no GPU time recorded", k.Kernel)
		}
	}
	if calls["gelu"] != 3 || calls["add"] != 3 {
		t.Fatalf("profile %+v, want 3 calls each of gelu and add", prof)
	}
}
