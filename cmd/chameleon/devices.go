package main

import (
	"encoding/json"
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
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(ads)
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
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func mib(b uint64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", b>>20)
}

func kib(b uint64) string { return fmt.Sprintf("%d KiB", b>>10) }
