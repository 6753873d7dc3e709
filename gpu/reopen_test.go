package gpu

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestReopenAfterClose runs, in a child of this test binary (a failure
// aborts the process inside wgpu), three rounds of: open a device, run a
// kernel, read it back, close the device. Close once kept the Meta
// bind-group layout alive; wgpu then handed the next device's pipelines
// that layout of a dead device, and the next device's first submit
// aborted ("a resource with a different device"). Every round must give
// the first round's numbers.
func TestReopenAfterClose(t *testing.T) {
	if os.Getenv("CHAMELEON_REOPEN_CHILD") == "1" {
		x := make([]float32, 256)
		for i := range x {
			x[i] = float32(i%17)/4 - 2
		}
		var first []float32
		for round := 0; round < 3; round++ {
			d, err := Open(Options{})
			if err != nil {
				t.Fatalf("round %d: no WebGPU device: %v", round, err)
			}
			w := NewWebGPU(d)
			a, b := Must(w.Alloc(F32, 256)), Must(w.Alloc(F32, 256))
			if err := w.Write(a, x); err != nil {
				t.Fatal(err)
			}
			w.GELU(b, a)
			y, err := w.ReadF32(b)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			d.Close()
			if round == 0 {
				first = y
				if y[0] == 0 && y[255] == 0 {
					t.Fatal("GELU gave zeros")
				}
			} else if !slices.Equal(y, first) {
				t.Fatalf("round %d differs from round 0", round)
			}
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReopenAfterClose$", "-test.v")
	cmd.Env = append(os.Environ(), "CHAMELEON_REOPEN_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestReopenAfterClose") {
		if len(out) > 4000 {
			out = out[:4000]
		}
		t.Fatalf("child run: %v\n%s", err, out)
	}
}
