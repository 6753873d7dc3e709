package gpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cogentcore/webgpu/wgpu"
)

// AdapterInfo describes one WebGPU adapter as `chameleon devices` shows it.
type AdapterInfo struct {
	Index    int      // position in the enumeration, usable with --device
	Name     string   // device name, or the driver's description where the device has none
	Vendor   string   // vendor name or PCI id
	Driver   string   // driver description
	Backend  string   // vulkan, metal, d3d12, browser-webgpu
	Type     string   // discrete-gpu, integrated-gpu, virtual-gpu, cpu
	Features []string // every feature the adapter offers
	Limits   Limits
}

// Limits are the device limits Chameleon's kernels care about.
type Limits struct {
	MaxStorageBufferBindingSize uint64
	MaxBufferSize               uint64
	MaxUniformBufferBindingSize uint64
	MaxStorageBuffersPerStage   uint32
	MaxWorkgroupStorageSize     uint32
	MaxInvocationsPerWorkgroup  uint32
	MaxWorkgroupSizeX           uint32
	MaxWorkgroupsPerDimension   uint32
	MinStorageOffsetAlignment   uint32
	MinUniformOffsetAlignment   uint32
	MaxTextureDimension2D       uint32
}

func limitsOf(l wgpu.Limits) Limits {
	return Limits{
		MaxStorageBufferBindingSize: l.MaxStorageBufferBindingSize,
		MaxBufferSize:               l.MaxBufferSize,
		MaxUniformBufferBindingSize: l.MaxUniformBufferBindingSize,
		MaxStorageBuffersPerStage:   l.MaxStorageBuffersPerShaderStage,
		MaxWorkgroupStorageSize:     l.MaxComputeWorkgroupStorageSize,
		MaxInvocationsPerWorkgroup:  l.MaxComputeInvocationsPerWorkgroup,
		MaxWorkgroupSizeX:           l.MaxComputeWorkgroupSizeX,
		MaxWorkgroupsPerDimension:   l.MaxComputeWorkgroupsPerDimension,
		MinStorageOffsetAlignment:   l.MinStorageBufferOffsetAlignment,
		MinUniformOffsetAlignment:   l.MinUniformBufferOffsetAlignment,
		MaxTextureDimension2D:       l.MaxTextureDimension2D,
	}
}

// ErrNoAdapter is returned (wrapped, with a hint) when no WebGPU adapter exists.
var ErrNoAdapter = errors.New("no WebGPU adapter found")

const noAdapterHint = "install a Vulkan driver (on Debian/Ubuntu: apt-get install mesa-vulkan-drivers " +
	"gives a CPU adapter, lavapipe) or a GPU driver with Vulkan, Metal or D3D12 support"

var (
	instOnce sync.Once
	inst     *wgpu.Instance
)

func instance() *wgpu.Instance {
	instOnce.Do(func() {
		// wgpu's own log goes to stderr; errors reach us as values, so
		// only its errors are worth printing.
		wgpu.SetLogLevel(wgpu.LogLevelError)
		quietWSI()
		// Primary backends only: wgpu's GL backend lacks the compute
		// features the kernels rely on and duplicates the Vulkan adapters.
		inst = wgpu.CreateInstance(&wgpu.InstanceDescriptor{Backends: wgpu.InstanceBackendPrimary})
	})
	return inst
}

func adapterInfo(i int, a *wgpu.Adapter) AdapterInfo {
	info := a.GetInfo()
	name := info.Name
	if name == "" || strings.HasPrefix(name, "0x") {
		name = info.DriverDescription
	}
	feats := adapterFeatures(a)
	sort.Strings(feats)
	in := AdapterInfo{
		Index:    i,
		Name:     name,
		Vendor:   info.VendorName,
		Driver:   info.DriverDescription,
		Backend:  info.BackendType.String(),
		Type:     info.AdapterType.String(),
		Features: feats,
		Limits:   limitsOf(a.GetLimits().Limits),
	}
	platformAdapterInfo(a, &in)
	return in
}

// Adapters lists every adapter wgpu can open on this machine.
func Adapters() []AdapterInfo {
	var out []AdapterInfo
	for i, a := range instance().EnumerateAdapters(nil) {
		out = append(out, adapterInfo(i, a))
	}
	return out
}

// quietWSI gives Mesa's window-system code a private runtime directory
// when the environment has none (headless machines, CI), so that opening a
// compute-only device does not print "XDG_RUNTIME_DIR is invalid" lines.
func quietWSI() {
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return
		}
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("chameleon-runtime-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err == nil {
		os.Setenv("XDG_RUNTIME_DIR", dir)
	}
}

// typeRank orders adapter types by preference: real GPUs before CPU ones.
func typeRank(t string) int {
	switch t {
	case "discrete-gpu":
		return 0
	case "integrated-gpu":
		return 1
	case "virtual-gpu":
		return 2
	case "cpu":
		return 4
	}
	return 3
}

// Options selects and configures the device.
type Options struct {
	// Adapter picks an adapter by index ("0") or by a case-insensitive
	// substring of its name, vendor or driver. Empty: the CHAMELEON_ADAPTER
	// environment variable, else the best adapter (a real GPU before a CPU one).
	Adapter string
	// NoF16 disables the shader-f16 feature even where the adapter has it.
	NoF16 bool
}

// Device is an opened WebGPU device with Chameleon's caches.
type Device struct {
	Info         AdapterInfo
	Limits       Limits // the limits granted to the device
	HasF16       bool   // shader-f16 enabled
	HasTimestamp bool   // timestamp-query enabled
	// HasTexRead: kernels may read rgba32uint storage textures
	// (texture_storage_2d<rgba32uint, read>), which wgpu-native grants
	// with its native TEXTURE_ADAPTER_SPECIFIC_FORMAT_FEATURES feature. The
	// texture kernels (MatMulTex, the CPU adapters' KV-cache copies) need it.
	HasTexRead bool
	Requested  string // which request succeeded: "adapter limits", "needed limits", "default limits" (+ "no optional features")

	adapter *wgpu.Adapter
	dev     *wgpu.Device
	queue   *wgpu.Queue

	mu   sync.Mutex
	lost string // non-empty once the device is lost: the reason

	pool      *bufferPool
	pipelines map[string]*pipeline
	metaBGL   *wgpu.BindGroupLayout
	metas     map[string]*metaEntry
	groups    map[string]*wgpu.BindGroup
	keyBuf    []byte              // scratch for bind-group keys
	shadows   map[*Buffer]*shadow // texture copies of weights (texture matmuls)
	scratch   map[uint32]*texture // per-call x textures by width
	xtex      map[int]*texture    // x textures written by x's producer, by row length (xtex.go)
	unpacked  map[uint32]*texture // per-call f32 copies of quantized weights by width (quant_tex.go)
	stagings  map[uint64]staging  // read-back buffers by size (takeStaging)
	nextTexID uint64
	texBytes  uint64            // bytes of live textures (MemStats)
	spare     *Buffer           // spareBinding's buffer
	settled   map[*texture]bool // settled weights' textures (resident.go)
	writeBuf  []byte            // writeRows' host chunk, reused
	rec       *recorder
	prof      *profiler
	nextFlops float64 // arithmetic of the next dispatch, declared by its op for profiles
	nextBytes float64 // its memory traffic, declared by gathers (0: the bound ranges)
}

// Open selects an adapter as opts say and opens a device on it, requesting
// every limit the adapter offers and shader-f16 and timestamp-query where
// present.
func Open(opts Options) (*Device, error) {
	sel := opts.Adapter
	if sel == "" {
		sel = os.Getenv("CHAMELEON_ADAPTER")
	}
	adapters := instance().EnumerateAdapters(nil)
	if len(adapters) == 0 {
		return nil, fmt.Errorf("gpu: %w: %s", ErrNoAdapter, noAdapterHint)
	}
	infos := make([]AdapterInfo, len(adapters))
	for i, a := range adapters {
		infos[i] = adapterInfo(i, a)
	}
	pick := -1
	if sel != "" {
		if n, err := strconv.Atoi(sel); err == nil {
			if n < 0 || n >= len(adapters) {
				return nil, fmt.Errorf("gpu: adapter index %d out of range: %d adapters (see `chameleon devices`)", n, len(adapters))
			}
			pick = n
		} else {
			s := strings.ToLower(sel)
			for i, in := range infos {
				hay := strings.ToLower(in.Name + " " + in.Vendor + " " + in.Driver + " " + in.Backend + " " + in.Type)
				if strings.Contains(hay, s) {
					pick = i
					break
				}
			}
			if pick < 0 {
				var names []string
				for _, in := range infos {
					names = append(names, fmt.Sprintf("%d: %s (%s)", in.Index, in.Name, in.Backend))
				}
				return nil, fmt.Errorf("gpu: no adapter matches %q; available: %s", sel, strings.Join(names, "; "))
			}
		}
	} else {
		pick = 0
		for i, in := range infos {
			if typeRank(in.Type) < typeRank(infos[pick].Type) {
				pick = i
			}
		}
	}
	for _, a := range adapters {
		a.Release()
	}
	d := &Device{Info: infos[pick]}
	if err := d.requestRetried(pick, opts); err != nil {
		return nil, err
	}
	d.queue = d.dev.GetQueue()
	d.Limits = limitsOf(d.dev.GetLimits().Limits)
	d.pool = newBufferPool(d)
	d.pipelines = map[string]*pipeline{}
	d.metas = map[string]*metaEntry{}
	d.groups = map[string]*wgpu.BindGroup{}
	d.shadows = map[*Buffer]*shadow{}
	d.scratch = map[uint32]*texture{}
	d.xtex = map[int]*texture{}
	d.unpacked = map[uint32]*texture{}
	d.settled = map[*texture]bool{}
	d.rec = &recorder{d: d}
	return d, nil
}

// requestRetried requests the device on adapter pick (request), retrying.
func (d *Device) requestRetried(pick int, opts Options) error {
	// With cogentcore/webgpu v0.23.0 on lavapipe, RequestDevice fails now and
	// then ("failed to request device": the binding drops wgpu's message),
	// more often on an adapter whose info was queried and on a loaded
	// machine; a freshly enumerated adapter and a retry have always
	// succeeded, so the request is made that way, a few times.
	var err error
	for try := 0; try < 5; try++ {
		if try > 0 {
			time.Sleep(time.Duration(100*try) * time.Millisecond)
		}
		if err = d.request(pick, opts); err == nil {
			break
		}
	}
	var refused *refusedError
	if errors.As(err, &refused) {
		return fmt.Errorf("gpu: adapter %q %w", d.Info.Name, err)
	} else if err != nil {
		return fmt.Errorf("gpu: adapter %q: request device: %w", d.Info.Name, err)
	}
	return nil
}

// request enumerates the adapters afresh and requests a device on adapter
// pick with shader-f16 and timestamp-query where present and every limit
// the adapter offers.
func (d *Device) request(pick int, opts Options) error {
	fresh := instance().EnumerateAdapters(nil)
	if pick >= len(fresh) {
		return fmt.Errorf("adapter %d disappeared while opening it", pick)
	}
	for i, a := range fresh {
		if i != pick {
			a.Release()
		}
	}
	a := fresh[pick]
	var feats []wgpu.FeatureName
	d.HasF16, d.HasTimestamp, d.HasTexRead = false, false, false
	if hasFeature(a, wgpu.FeatureNameShaderF16) && !opts.NoF16 {
		feats = append(feats, wgpu.FeatureNameShaderF16)
		d.HasF16 = true
	}
	if hasFeature(a, wgpu.FeatureNameTimestampQuery) {
		feats = append(feats, wgpu.FeatureNameTimestampQuery)
		d.HasTimestamp = true
	}
	if hasFeature(a, wgpu.NativeFeatureTextureAdapterSpecificFormatFeatures) {
		feats = append(feats, wgpu.NativeFeatureTextureAdapterSpecificFormatFeatures)
		d.HasTexRead = true
	}
	// Limits, best first: everything the adapter offers; only what the
	// kernels use, raised to the adapter's values (some drivers, e.g.
	// NVIDIA's Vulkan driver through wgpu, refuse a device that asks for
	// every reported limit); WebGPU's defaults. Then the same without the
	// optional features.
	all := a.GetLimits().Limits
	needed := wgpu.DefaultLimits()
	needed.MaxStorageBufferBindingSize = all.MaxStorageBufferBindingSize
	// u64 max is wgpu-native's "undefined" (which means the 256 MiB
	// default): ask for a large finite size instead.
	needed.MaxBufferSize = min(all.MaxBufferSize, 1<<34)
	needed.MaxStorageBuffersPerShaderStage = all.MaxStorageBuffersPerShaderStage
	needed.MaxComputeWorkgroupsPerDimension = all.MaxComputeWorkgroupsPerDimension
	needed.MaxComputeWorkgroupStorageSize = all.MaxComputeWorkgroupStorageSize
	needed.MaxComputeInvocationsPerWorkgroup = all.MaxComputeInvocationsPerWorkgroup
	needed.MaxComputeWorkgroupSizeX = all.MaxComputeWorkgroupSizeX
	needed.MaxComputeWorkgroupSizeY = all.MaxComputeWorkgroupSizeY
	needed.MaxTextureDimension2D = all.MaxTextureDimension2D
	refused := &refusedError{needed: needed}
	for _, withFeats := range []bool{true, false} {
		if !withFeats && len(feats) == 0 {
			break // the same requests again
		}
		for i, lim := range []wgpu.Limits{all, needed, wgpu.DefaultLimits()} {
			fs := feats
			if !withFeats {
				fs = nil
			}
			dev, err := a.RequestDevice(&wgpu.DeviceDescriptor{
				Label:            "chameleon",
				RequiredFeatures: fs,
				RequiredLimits:   &wgpu.RequiredLimits{Limits: lim},
				// No DeviceLostCallback: cogentcore/webgpu v0.23.0 passes it a Go
				// pointer inside Go memory, which cgo's pointer check rejects.
				// Loss is detected from the errors and map statuses instead
				// (markLost).
			})
			if err != nil {
				refused.tries = append(refused.tries, deviceTry{[]string{"adapter", "needed", "default"}[i], featureNames(fs), err})
				continue
			}
			d.Requested = []string{"adapter", "needed", "default"}[i] + " limits"
			if !withFeats {
				d.HasF16, d.HasTimestamp, d.HasTexRead = false, false, false
				d.Requested += ", no optional features"
			}
			d.adapter, d.dev = a, dev
			return nil
		}
	}
	a.Release()
	return refused
}

func featureNames(fs []wgpu.FeatureName) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.String())
	}
	return strings.Join(out, "+")
}

// ErrDeviceLost wraps every error reported after the device was lost.
var ErrDeviceLost = errors.New("GPU device lost")

// Lost reports whether the device was lost, with the driver's reason.
func (d *Device) Lost() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lost != "" {
		return fmt.Errorf("gpu: %w: %s", ErrDeviceLost, d.lost)
	}
	return nil
}

// markLost records that the device is gone if err says so (wgpu reports
// "lost" or an invalid parent device in its messages).
func (d *Device) markLost(err error) {
	if err == nil {
		return
	}
	m := strings.ToLower(err.Error())
	if strings.Contains(m, "device lost") || strings.Contains(m, "device is lost") || strings.Contains(m, "parent device is invalid") {
		d.mu.Lock()
		if d.lost == "" {
			d.lost = err.Error()
		}
		d.mu.Unlock()
	}
}

// Close releases the device and everything cached on it.
func (d *Device) Close() {
	if d.dev == nil {
		return
	}
	d.releaseTextures() // releases the bind groups that use them too
	for _, s := range d.stagings {
		s.buf.Release()
	}
	d.stagings = nil
	for _, g := range d.groups {
		g.Release()
	}
	for _, m := range d.metas {
		m.group.Release()
		m.buf.Release()
	}
	for _, p := range d.pipelines {
		p.release()
	}
	if d.metaBGL != nil {
		d.metaBGL.Release()
		d.metaBGL = nil
	}
	d.pool.release()
	if d.prof != nil {
		d.prof.release()
	}
	d.queue.Release()
	d.dev.Release()
	d.adapter.Release()
	d.dev = nil
}

// String names the adapter and its backend.
func (d *Device) String() string {
	if d.Requested != "" && d.Requested != "adapter limits" {
		return fmt.Sprintf("%s (%s, %s; %s)", d.Info.Name, d.Info.Backend, d.Info.Type, d.Requested)
	}
	return fmt.Sprintf("%s (%s, %s)", d.Info.Name, d.Info.Backend, d.Info.Type)
}
