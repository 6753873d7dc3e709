package gpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/cogentcore/webgpu/wgpu"

	"github.com/chameleon-llm/chameleon/wgsl"
)

// pipeline is a compiled kernel with its explicit layouts. Explicit layouts
// (not GetBindGroupLayout) because the browser backend requires them.
type pipeline struct {
	name   string
	nIn    int    // read-only storage bindings 0..nIn-1
	nOut   int    // read-write storage bindings nIn..nIn+nOut-1
	tex    string // group 2 textures, one letter each (see texKinds); "" for none
	tbgl   *wgpu.BindGroupLayout
	pipe   *wgpu.ComputePipeline
	bgl    *wgpu.BindGroupLayout
	layout *wgpu.PipelineLayout
	module *wgpu.ShaderModule
}

func (p *pipeline) release() {
	p.pipe.Release()
	p.layout.Release()
	p.bgl.Release()
	if p.tbgl != nil {
		p.tbgl.Release()
	}
	p.module.Release()
}

// metaEntry is a uniform buffer holding one Meta value and its bind group.
// Metas are cached by content: a decode loop reuses the same few.
type metaEntry struct {
	buf   *wgpu.Buffer
	group *wgpu.BindGroup
}

// KernelError is a device error attributed to a kernel.
type KernelError struct {
	Kernel string
	Err    error
}

func (e *KernelError) Error() string { return fmt.Sprintf("gpu: kernel %s: %v", e.Kernel, e.Err) }
func (e *KernelError) Unwrap() error { return e.Err }

func (d *Device) metaLayout() (*wgpu.BindGroupLayout, error) {
	if d.metaBGL != nil {
		return d.metaBGL, nil
	}
	bgl, err := d.dev.CreateBindGroupLayout(&wgpu.BindGroupLayoutDescriptor{
		Label: "meta",
		Entries: []wgpu.BindGroupLayoutEntry{{
			Binding:    0,
			Visibility: wgpu.ShaderStageCompute,
			Buffer:     wgpu.BufferBindingLayout{Type: wgpu.BufferBindingTypeUniform},
		}},
	})
	if err != nil {
		return nil, err
	}
	d.metaBGL = bgl
	return bgl, nil
}

// Pipeline compiles kernel name (a wgsl file) with nIn read-only and nOut
// read-write storage bindings in group 0 and a Meta uniform in group 1.
// Compiled pipelines are cached by name.
func (d *Device) pipeline(name string, nIn, nOut int) (*pipeline, error) {
	return d.pipelineTex(name, nIn, nOut, "")
}

// pipelineTex is pipeline for kernels that also bind textures in group 2,
// tex naming their kinds (texKinds).
func (d *Device) pipelineTex(name string, nIn, nOut int, tex string) (*pipeline, error) {
	if p, ok := d.pipelines[name]; ok {
		if p.nIn != nIn || p.nOut != nOut || p.tex != tex {
			panic(fmt.Sprintf("gpu: kernel %s used with %d+%d bindings and textures %q, compiled with %d+%d and %q",
				name, nIn, nOut, tex, p.nIn, p.nOut, p.tex))
		}
		return p, nil
	}
	return d.compileTex(name, wgsl.Source(name), nIn, nOut, tex)
}

// compile builds and caches a pipeline from WGSL source.
func (d *Device) compile(name, src string, nIn, nOut int) (*pipeline, error) {
	return d.compileTex(name, src, nIn, nOut, "")
}

func (d *Device) compileTex(name, src string, nIn, nOut int, tex string) (*pipeline, error) {
	if err := d.Lost(); err != nil {
		return nil, &KernelError{name, err}
	}
	mod, err := d.dev.CreateShaderModule(&wgpu.ShaderModuleDescriptor{
		Label:          name,
		WGSLDescriptor: &wgpu.ShaderModuleWGSLDescriptor{Code: src},
	})
	if err != nil {
		return nil, &KernelError{name, fmt.Errorf("shader failed validation: %w", err)}
	}
	entries := make([]wgpu.BindGroupLayoutEntry, nIn+nOut)
	for i := range entries {
		t := wgpu.BufferBindingTypeReadOnlyStorage
		if i >= nIn {
			t = wgpu.BufferBindingTypeStorage
		}
		entries[i] = wgpu.BindGroupLayoutEntry{Binding: uint32(i), Visibility: wgpu.ShaderStageCompute,
			Buffer: wgpu.BufferBindingLayout{Type: t}}
	}
	bgl, err := d.dev.CreateBindGroupLayout(&wgpu.BindGroupLayoutDescriptor{Label: name, Entries: entries})
	if err != nil {
		mod.Release()
		return nil, &KernelError{name, fmt.Errorf("bind group layout: %w", err)}
	}
	mbgl, err := d.metaLayout()
	if err != nil {
		return nil, &KernelError{name, fmt.Errorf("meta layout: %w", err)}
	}
	layouts := []*wgpu.BindGroupLayout{bgl, mbgl}
	var tbgl *wgpu.BindGroupLayout
	if tex != "" {
		if tbgl, err = d.texLayout(name, tex); err != nil {
			return nil, &KernelError{name, fmt.Errorf("texture bind group layout: %w", err)}
		}
		layouts = append(layouts, tbgl)
	}
	layout, err := d.dev.CreatePipelineLayout(&wgpu.PipelineLayoutDescriptor{Label: name,
		BindGroupLayouts: layouts})
	if err != nil {
		return nil, &KernelError{name, fmt.Errorf("pipeline layout: %w", err)}
	}
	pipe, err := d.dev.CreateComputePipeline(&wgpu.ComputePipelineDescriptor{
		Layout:  layout,
		Compute: wgpu.ProgrammableStageDescriptor{Module: mod, EntryPoint: "main"},
	})
	if err != nil {
		return nil, &KernelError{name, fmt.Errorf("compute pipeline: %w", err)}
	}
	p := &pipeline{name: name, nIn: nIn, nOut: nOut, tex: tex, tbgl: tbgl, pipe: pipe, bgl: bgl, layout: layout, module: mod}
	d.pipelines[name] = p
	return p, nil
}

// Meta packs a kernel's uniform parameters: each value is one 4-byte word
// (int and uint32 as u32, int32 as i32, float32 as f32), in the order of the
// kernel's `struct Meta`. The struct is padded to 16 bytes.
type Meta []any

func (m Meta) bytes() []byte {
	n := (len(m) + 3) / 4 * 4
	if n == 0 {
		n = 4
	}
	b := make([]byte, 4*n)
	for i, v := range m {
		var w uint32
		switch x := v.(type) {
		case int:
			w = uint32(x)
		case int32:
			w = uint32(x)
		case uint32:
			w = x
		case float32:
			w = math.Float32bits(x)
		case bool:
			if x {
				w = 1
			}
		default:
			panic(fmt.Sprintf("gpu: Meta value %T", v))
		}
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

const maxCachedMetas = 4096
const maxCachedGroups = 8192

func (d *Device) meta(m Meta) (*wgpu.BindGroup, error) {
	b := m.bytes()
	if e, ok := d.metas[string(b)]; ok {
		return e.group, nil
	}
	key := string(b)
	if len(d.metas) >= maxCachedMetas {
		// Pending command buffers may still use these: flush first.
		if err := d.flush(); err != nil {
			return nil, err
		}
		for _, e := range d.metas {
			e.group.Release()
			e.buf.Release()
		}
		d.metas = map[string]*metaEntry{}
	}
	buf, err := d.dev.CreateBufferInit(&wgpu.BufferInitDescriptor{Label: "meta", Contents: b,
		Usage: wgpu.BufferUsageUniform | wgpu.BufferUsageCopyDst})
	if err != nil {
		return nil, fmt.Errorf("meta buffer: %w", err)
	}
	mbgl, err := d.metaLayout()
	if err != nil {
		return nil, err
	}
	g, err := d.dev.CreateBindGroup(&wgpu.BindGroupDescriptor{Label: "meta", Layout: mbgl,
		Entries: []wgpu.BindGroupEntry{{Binding: 0, Buffer: buf, Size: uint64(len(b))}}})
	if err != nil {
		return nil, fmt.Errorf("meta bind group: %w", err)
	}
	d.metas[key] = &metaEntry{buf: buf, group: g}
	return g, nil
}

// binding is a byte range of a buffer bound to one kernel slot.
type binding struct {
	buf    *Buffer
	offset uint64
	size   uint64
}

func (d *Device) bindGroup(p *pipeline, bs []binding) (*wgpu.BindGroup, error) {
	// The key is built in a reused buffer and looked up without making a
	// string (a decode step binds ~200 groups, nearly all cached).
	k := append(d.keyBuf[:0], p.name...)
	for _, b := range bs {
		k = append(k, '|')
		k = strconv.AppendUint(k, b.buf.id, 10)
		k = append(k, ':')
		k = strconv.AppendUint(k, b.offset, 10)
		k = append(k, ':')
		k = strconv.AppendUint(k, b.size, 10)
	}
	d.keyBuf = k
	if g, ok := d.groups[string(k)]; ok {
		return g, nil
	}
	key := string(k)
	if len(d.groups) >= maxCachedGroups {
		if err := d.flush(); err != nil {
			return nil, err
		}
		for _, g := range d.groups {
			g.Release()
		}
		d.groups = map[string]*wgpu.BindGroup{}
	}
	entries := make([]wgpu.BindGroupEntry, len(bs))
	for i, b := range bs {
		if b.size > d.Limits.MaxStorageBufferBindingSize {
			return nil, fmt.Errorf("binding %d is %d bytes, over the device's maxStorageBufferBindingSize of %d",
				i, b.size, d.Limits.MaxStorageBufferBindingSize)
		}
		entries[i] = wgpu.BindGroupEntry{Binding: uint32(i), Buffer: b.buf.buf, Offset: b.offset, Size: b.size}
	}
	g, err := d.dev.CreateBindGroup(&wgpu.BindGroupDescriptor{Label: p.name, Layout: p.bgl, Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("bind group: %w", err)
	}
	d.groups[key] = g
	return g, nil
}
