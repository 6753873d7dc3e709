//go:build !js

package gpu

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"github.com/cogentcore/webgpu/wgpu"
)

// profiler brackets every dispatch with GPU timestamps (written on the
// command encoder between compute passes) and accumulates them per kernel.
type profiler struct {
	d        *Device
	qs       *wgpu.QuerySet
	resolve_ *wgpu.Buffer
	names    []string     // kernel of each recorded pair in the open encoder
	work     [][2]float64 // (flops, bytes) of each recorded pair
	totals   map[string]*KernelTime
}

const profPairs = 1024

// StartProfile turns on per-kernel GPU timing. It fails where the adapter
// lacks timestamp queries.
func (d *Device) StartProfile() error {
	if !d.HasTimestamp {
		return fmt.Errorf("gpu: adapter %s has no timestamp-query feature", d.Info.Name)
	}
	if err := d.flush(); err != nil {
		return err
	}
	if d.prof != nil {
		d.prof.totals = map[string]*KernelTime{}
		return nil
	}
	qs, err := d.dev.CreateQuerySet(&wgpu.QuerySetDescriptor{Label: "profile", Type: wgpu.QueryTypeTimestamp, Count: 2 * profPairs})
	if err != nil {
		return fmt.Errorf("gpu: timestamp query set: %w", err)
	}
	rb, err := d.dev.CreateBuffer(&wgpu.BufferDescriptor{Label: "timestamps", Size: 16 * profPairs,
		Usage: wgpu.BufferUsageQueryResolve | wgpu.BufferUsageCopySrc})
	if err != nil {
		qs.Release()
		return fmt.Errorf("gpu: timestamp buffer: %w", err)
	}
	d.prof = &profiler{d: d, qs: qs, resolve_: rb, totals: map[string]*KernelTime{}}
	return nil
}

// StopProfile flushes, turns timing off and returns the per-kernel totals,
// largest first.
func (d *Device) StopProfile() ([]KernelTime, error) {
	if d.prof == nil {
		return nil, nil
	}
	err := d.flush()
	p := d.prof
	d.prof = nil
	var out []KernelTime
	for _, kt := range p.totals {
		out = append(out, *kt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Total > out[j].Total })
	p.release()
	return out, err
}

func (p *profiler) release() {
	p.qs.Release()
	p.resolve_.Release()
}

func (p *profiler) full() bool { return len(p.names) >= profPairs }

func (p *profiler) begin(enc *wgpu.CommandEncoder, name string, flops, bytes float64) {
	enc.WriteTimestamp(p.qs, uint32(2*len(p.names)))
	p.names = append(p.names, name)
	p.work = append(p.work, [2]float64{flops, bytes})
}

func (p *profiler) end(enc *wgpu.CommandEncoder) {
	enc.WriteTimestamp(p.qs, uint32(2*len(p.names)-1))
}

func (p *profiler) resolve(enc *wgpu.CommandEncoder) {
	if len(p.names) == 0 {
		return
	}
	n := uint32(2 * len(p.names))
	enc.ResolveQuerySet(p.qs, 0, n, p.resolve_, 0)
}

// collect reads back the resolved timestamps of the last submit. Timestamps
// are taken as nanoseconds, which is what Vulkan, Metal and D3D12 report
// through wgpu on the adapters measured (lavapipe, NVIDIA).
func (p *profiler) collect() error {
	if len(p.names) == 0 {
		return nil
	}
	n := uint64(16 * len(p.names))
	names, work := p.names, p.work
	p.names, p.work = nil, nil
	staging, err := p.d.takeStaging(n)
	if err != nil {
		return err
	}
	reuse := false // only once mapped and unmapped again
	defer func() { p.d.putStaging(staging, reuse) }()
	enc, err := p.d.dev.CreateCommandEncoder(nil)
	if err != nil {
		return err
	}
	if err := enc.CopyBufferToBuffer(p.resolve_, 0, staging.buf, 0, n); err != nil {
		return err
	}
	cb, err := enc.Finish(nil)
	enc.Release()
	if err != nil {
		return err
	}
	p.d.queue.Submit(cb)
	cb.Release()
	p.d.wait()
	raw, err := mapRead(p.d, staging.buf, n, n)
	if err != nil {
		return err
	}
	reuse = true
	for i, name := range names {
		t0 := binary.LittleEndian.Uint64(raw[16*i:])
		t1 := binary.LittleEndian.Uint64(raw[16*i+8:])
		kt := p.totals[name]
		if kt == nil {
			kt = &KernelTime{Kernel: name}
			p.totals[name] = kt
		}
		kt.Calls++
		kt.Flops += work[i][0]
		kt.Bytes += work[i][1]
		if t1 > t0 {
			kt.Total += time.Duration(t1 - t0)
		}
	}
	return nil
}
