package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/gpu"
)

func devicesCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "devices",
		Short: "List the WebGPU adapters: name, backend, type, limits and features",
		RunE: func(cmd *cobra.Command, args []string) error {
			ads := gpu.Adapters()
			if asJSON {
				out := []deviceJSON{}
				for _, a := range ads {
					out = append(out, deviceView(a))
				}
				return printJSON(os.Stdout, out)
			}
			if len(ads) == 0 {
				return fmt.Errorf("%w: install a Vulkan driver (Debian/Ubuntu: apt-get install mesa-vulkan-drivers)", gpu.ErrNoAdapter)
			}
			for _, a := range ads {
				fmt.Printf("[%d] %s\n", a.Index, a.Name)
				fmt.Printf("    backend %s, type %s, vendor %s, driver %s\n", a.Backend, a.Type, a.Vendor, a.Driver)
				l := a.Limits
				fmt.Printf("    limits: storage binding %s, buffer %s, workgroup storage %s, invocations/workgroup %d, workgroups/dim %d, storage buffers/stage %d\n",
					mib(l.MaxStorageBufferBindingSize), mib(l.MaxBufferSize), kib(uint64(l.MaxWorkgroupStorageSize)),
					l.MaxInvocationsPerWorkgroup, l.MaxWorkgroupsPerDimension, l.MaxStorageBuffersPerStage)
				var std, native []string
				for _, f := range a.Features {
					if strings.HasPrefix(f, "native-feature-") {
						native = append(native, strings.TrimPrefix(f, "native-feature-"))
					} else {
						std = append(std, f)
					}
				}
				fmt.Printf("    features: %s\n", strings.Join(std, " "))
				if len(native) > 0 {
					fmt.Printf("    native:   %s\n", strings.Join(native, " "))
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of adapters (docs/cli-json.md)")
	return c
}

// deviceJSON is one adapter in `chameleon devices --json`.
type deviceJSON struct {
	Index    int        `json:"index"`
	Name     string     `json:"name"`
	Vendor   string     `json:"vendor"`
	Driver   string     `json:"driver"`
	Backend  string     `json:"backend"`
	Type     string     `json:"type"`
	Features []string   `json:"features"`
	Limits   limitsJSON `json:"limits"`
}

type limitsJSON struct {
	MaxStorageBufferBindingSize uint64 `json:"max_storage_buffer_binding_size"`
	MaxBufferSize               uint64 `json:"max_buffer_size"`
	MaxUniformBufferBindingSize uint64 `json:"max_uniform_buffer_binding_size"`
	MaxStorageBuffersPerStage   uint32 `json:"max_storage_buffers_per_shader_stage"`
	MaxWorkgroupStorageSize     uint32 `json:"max_compute_workgroup_storage_size"`
	MaxInvocationsPerWorkgroup  uint32 `json:"max_compute_invocations_per_workgroup"`
	MaxWorkgroupSizeX           uint32 `json:"max_compute_workgroup_size_x"`
	MaxWorkgroupsPerDimension   uint32 `json:"max_compute_workgroups_per_dimension"`
	MinStorageOffsetAlignment   uint32 `json:"min_storage_buffer_offset_alignment"`
	MinUniformOffsetAlignment   uint32 `json:"min_uniform_buffer_offset_alignment"`
	MaxTextureDimension2D       uint32 `json:"max_texture_dimension_2d"`
}

// deviceView is a in snake_case, limits named as WebGPU's spec names them.
func deviceView(a gpu.AdapterInfo) deviceJSON {
	l := a.Limits
	f := a.Features
	if f == nil {
		f = []string{}
	}
	return deviceJSON{Index: a.Index, Name: a.Name, Vendor: a.Vendor, Driver: a.Driver, Backend: a.Backend, Type: a.Type, Features: f,
		Limits: limitsJSON{l.MaxStorageBufferBindingSize, l.MaxBufferSize, l.MaxUniformBufferBindingSize, l.MaxStorageBuffersPerStage,
			l.MaxWorkgroupStorageSize, l.MaxInvocationsPerWorkgroup, l.MaxWorkgroupSizeX, l.MaxWorkgroupsPerDimension,
			l.MinStorageOffsetAlignment, l.MinUniformOffsetAlignment, l.MaxTextureDimension2D}}
}

func mib(b uint64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", b>>20)
}

func kib(b uint64) string { return fmt.Sprintf("%d KiB", b>>10) }
