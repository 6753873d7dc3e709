//go:build js

package gpu

import (
	"errors"

	"github.com/cogentcore/webgpu/wgpu"
)

// profiler is inert in the browser: the js backend of cogentcore/webgpu
// exposes no timestamp queries.
type profiler struct{}

func (p *profiler) release()                                                          {}
func (p *profiler) full() bool                                                        { return false }
func (p *profiler) begin(enc *wgpu.CommandEncoder, name string, flops, bytes float64) {}
func (p *profiler) end(enc *wgpu.CommandEncoder)                                      {}
func (p *profiler) resolve(enc *wgpu.CommandEncoder)                                  {}
func (p *profiler) collect() error                                                    { return nil }

// StartProfile fails in the browser: no timestamp queries there.
func (d *Device) StartProfile() error {
	return errors.New("gpu: per-kernel GPU timing needs timestamp queries, which the browser backend does not expose")
}

// StopProfile returns nothing in the browser.
func (d *Device) StopProfile() ([]KernelTime, error) { return nil, d.flush() }
