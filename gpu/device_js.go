//go:build js

package gpu

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall/js"
	"unsafe"

	"github.com/cogentcore/webgpu/jsx"
	"github.com/cogentcore/webgpu/wgpu"
)

// In the browser the device comes from navigator.gpu through the same
// calls as natively; what differs is below. Waiting and readback await
// promises (jsx.Await blocks the calling goroutine and lets the page's
// event loop run), so every op that flushes or reads must run on a
// goroutine, never inside a JS callback: the wasm package starts one per
// call from the page.
//
// cogentcore/webgpu v0.23.0's js backend reports no errors (validation
// errors only reach the console), cannot poll the device and treats a
// rejected map as a success. The functions here reach the underlying JS
// objects to do those three things properly: device errors and loss are
// caught with the device's uncapturederror event and lost promise and
// returned from the next Flush or read.

// reuseStaging: mapRead destroys each read-back buffer (takeStaging).
const reuseStaging = false

// jsValueOf returns the JS object behind a wgpu handle. In the js backend
// every handle is a struct holding only its js.Value (checked in init).
func jsValueOf[T wgpu.Adapter | wgpu.Device | wgpu.Buffer | wgpu.Queue](h *T) js.Value {
	return *(*js.Value)(unsafe.Pointer(h))
}

func init() {
	var (
		a wgpu.Adapter
		d wgpu.Device
		b wgpu.Buffer
		q wgpu.Queue
		v js.Value
	)
	if unsafe.Sizeof(a) != unsafe.Sizeof(v) || unsafe.Sizeof(d) != unsafe.Sizeof(v) ||
		unsafe.Sizeof(b) != unsafe.Sizeof(v) || unsafe.Sizeof(q) != unsafe.Sizeof(v) {
		panic("gpu: the webgpu js backend's handles no longer wrap a single js.Value; update device_js.go")
	}
}

// platformAdapterInfo fills in what the js backend's GetInfo leaves empty,
// from the browser's GPUAdapterInfo: names, and the type, "cpu" for a
// fallback (software) adapter such as Chrome's SwiftShader, else "unknown"
// (WebGPU does not say whether a GPU is discrete or integrated). The kernel
// variants are chosen from the type.
func platformAdapterInfo(a *wgpu.Adapter, in *AdapterInfo) {
	av := jsValueOf(a)
	info := av.Get("info")
	str := func(k string) string {
		if info.Truthy() {
			if v := info.Get(k); v.Type() == js.TypeString {
				return v.String()
			}
		}
		return ""
	}
	vendor, arch, desc := str("vendor"), str("architecture"), str("description")
	in.Vendor, in.Driver = vendor, desc
	in.Name = strings.TrimSpace(strings.Join([]string{vendor, arch, desc}, " "))
	if in.Name == "" {
		in.Name = "WebGPU adapter"
	}
	in.Backend = "browser"
	in.Type = "unknown"
	fallback := av.Get("isFallbackAdapter").Truthy() || (info.Truthy() && info.Get("isFallbackAdapter").Truthy())
	soft := strings.ToLower(arch + " " + desc)
	if fallback || strings.Contains(soft, "swiftshader") || strings.Contains(soft, "llvmpipe") {
		in.Type = "cpu"
	}
}

// cpuMatMulVariant: see device_native.go.
const cpuMatMulVariant = MatMulReg

func passEnd(p *wgpu.ComputePassEncoder) error {
	p.End()
	return nil
}

func beginPass(enc *wgpu.CommandEncoder, label string) *wgpu.ComputePassEncoder {
	return enc.BeginComputePass(nil)
}

// queueWrite uploads data into b at offset through GPUQueue.writeBuffer,
// from a fresh JS Uint8Array holding a copy of data.
//
// It does not use the js backend's Queue.WriteBuffer: that passes a
// Uint8ClampedArray VIEW of the wasm memory (jsx.BytesToJS over
// wasm.instance.exports.mem.buffer), made while the call's arguments are
// still being built. The arguments after it (and syscall/js's Call itself)
// box integers and js.Values into interfaces, which allocates; when such an
// allocation grows the wasm memory, the old ArrayBuffer is detached and the
// view already made shrinks to length 0, so writeBuffer(buf, off, view, 0,
// len) throws "Number of bytes to write is too large". It happens only on
// the call that crosses a memory growth, which is why the demo failed in a
// fraction of runs. A Uint8Array allocated by JS and filled by
// js.CopyBytesToJS (which reads the wasm memory at the moment it copies)
// belongs to no wasm buffer and cannot be detached.
func queueWrite(q *wgpu.Queue, b *wgpu.Buffer, offset uint64, data []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			jerr, ok := p.(js.Error)
			if !ok {
				panic(p)
			}
			err = fmt.Errorf("writeBuffer of %d bytes at %d: %v", len(data), offset, jerr)
		}
	}()
	if len(data) == 0 {
		return nil
	}
	arr := js.Global().Get("Uint8Array").New(len(data))
	js.CopyBytesToJS(arr, data)
	jsValueOf(q).Call("writeBuffer", jsValueOf(b), offset, arr)
	return nil
}

// adapterFeatures lists the adapter's GPUSupportedFeatures.
func adapterFeatures(a *wgpu.Adapter) []string {
	var out []string
	feats := jsValueOf(a).Get("features")
	if feats.Truthy() {
		feats.Call("forEach", js.FuncOf(func(this js.Value, args []js.Value) any {
			out = append(out, args[0].String())
			return nil
		}))
	}
	return out
}

// hasFeature is false for every feature in the browser: the js backend
// passes requiredFeatures to requestDevice as numbers, which the browser
// rejects, so no optional feature can be requested. The kernels need none
// (f16 weights are unpacked with unpack2x16float).
func hasFeature(a *wgpu.Adapter, f wgpu.FeatureName) bool { return false }

// jsWatch holds what the browser reported about one device.
type jsWatch struct {
	mu     sync.Mutex
	errs   []string // uncaptured device errors since the last wait
	funcs  []js.Func
	closed bool
}

var (
	watchMu sync.Mutex
	watches = map[*Device]*jsWatch{}
)

// watch subscribes once per device to its uncapturederror event and its
// lost promise.
func (d *Device) watch() *jsWatch {
	watchMu.Lock()
	defer watchMu.Unlock()
	if w, ok := watches[d]; ok {
		return w
	}
	w := &jsWatch{}
	watches[d] = w
	dev := jsValueOf(d.dev)
	onErr := js.FuncOf(func(this js.Value, args []js.Value) any {
		msg := "device error"
		if len(args) > 0 {
			if e := args[0].Get("error"); e.Truthy() {
				msg = e.Get("message").String()
			}
		}
		w.mu.Lock()
		if len(w.errs) < 16 {
			w.errs = append(w.errs, msg)
		}
		w.mu.Unlock()
		return nil
	})
	dev.Call("addEventListener", "uncapturederror", onErr)
	onLost := js.FuncOf(func(this js.Value, args []js.Value) any {
		reason := "the browser gave no reason"
		if len(args) > 0 && args[0].Truthy() {
			reason = fmt.Sprintf("%s: %s", args[0].Get("reason").String(), args[0].Get("message").String())
		}
		d.mu.Lock()
		if d.lost == "" {
			d.lost = reason
		}
		d.mu.Unlock()
		return nil
	})
	if lost := dev.Get("lost"); lost.Truthy() {
		lost.Call("then", onLost)
	}
	w.funcs = append(w.funcs, onErr, onLost)
	return w
}

// takeErrors returns the device errors reported since the last call.
func (w *jsWatch) takeErrors() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) == 0 {
		return nil
	}
	err := fmt.Errorf("gpu: device error: %s", strings.Join(w.errs, "; "))
	w.errs = w.errs[:0]
	return err
}

// wait awaits the queue's onSubmittedWorkDone promise, then reports any
// error the browser raised for the work (kept for the running flush).
func (d *Device) wait() {
	w := d.watch()
	if _, ok := jsx.Await(jsValueOf(d.queue).Call("onSubmittedWorkDone")); !ok {
		d.rec.fail(errors.New("gpu: waiting for the queue failed"))
	}
	if err := w.takeErrors(); err != nil {
		d.markLost(err)
		d.rec.fail(err)
	}
}

// mapRead maps staging (awaiting the browser's promise) and copies it out.
func mapRead(d *Device, staging *wgpu.Buffer, asz, size uint64) ([]byte, error) {
	w := d.watch()
	// The js backend's Release is a no-op: destroy frees the GPU memory now
	// rather than when the JS garbage collector gets to it.
	defer jsValueOf(staging).Call("destroy")
	res, ok := jsx.Await(jsValueOf(staging).Call("mapAsync", uint32(wgpu.MapModeRead), 0, asz))
	if !ok {
		if err := d.Lost(); err != nil {
			return nil, err
		}
		msg := "rejected"
		if res.Truthy() && res.Get("message").Truthy() {
			msg = res.Get("message").String()
		}
		if err := w.takeErrors(); err != nil {
			return nil, fmt.Errorf("gpu: map readback buffer: %s (%w)", msg, err)
		}
		return nil, fmt.Errorf("gpu: map readback buffer: %s", msg)
	}
	out := make([]byte, size)
	copy(out, staging.GetMappedRange(0, uint(asz))[:size])
	staging.Unmap()
	if err := w.takeErrors(); err != nil {
		d.markLost(err)
		return nil, err
	}
	return out, nil
}
