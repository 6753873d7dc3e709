package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

func selfcheckCmd() *cobra.Command {
	var seed uint64
	var profile, asJSON bool
	c := &cobra.Command{
		Use:   "selfcheck",
		Short: "Run every WGSL kernel on the adapter at GPT-2 sizes and compare with the plain-Go reference",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			d, err := gpu.Open(gpu.Options{Adapter: deviceFlag})
			if err != nil {
				return err
			}
			defer d.Close()
			if seed == 0 {
				seed = uint64(time.Now().UnixNano())
			}
			w := gpu.NewWebGPU(d)
			if asJSON {
				return selfcheckJSON(w, d.String(), seed)
			}
			fmt.Printf("self-check on %s (matmul variant %s, seed %d)\n", d, w.MatMulVariant, seed)
			if profile {
				if err := w.StartProfile(); err != nil {
					return err
				}
			}
			checkErr := selfcheck(w, seed)
			if profile {
				prof, err := w.StopProfile()
				if err != nil {
					return err
				}
				fmt.Println("GPU time per kernel (timestamp queries):")
				for _, k := range prof {
					fmt.Printf("  %-24s %4d calls %10.3f ms\n", k.Kernel, k.Calls, float64(k.Total.Microseconds())/1000)
				}
			}
			return checkErr
		},
	}
	c.Flags().Uint64Var(&seed, "seed", 0, "random seed (0: from the clock)")
	c.Flags().BoolVar(&profile, "profile", true, "print the GPU time of each kernel from timestamp queries")
	c.Flags().BoolVar(&asJSON, "json", false, "print each check's verdict as JSON (no kernel profile)")
	return c
}

// selfcheck runs conformance.GPT2 on w against the plain-Go reference,
// one line per kernel with the check's wall time (both backends, uploads
// included) and its verdict.
func selfcheck(w *gpu.WebGPU, seed uint64) error {
	fails := 0
	for _, c := range conformance.GPT2 {
		r := conformance.Check(c, ref.New(), w, seed)
		status := "ok"
		if err := r.Err(); err != nil {
			status = "FAIL: " + err.Error()
			fails++
		}
		fmt.Printf("  %-40s %8.1f ms  %s\n", c.Name, float64(r.Elapsed.Microseconds())/1000, status)
	}
	if fails > 0 {
		return fmt.Errorf("self-check: %d of the kernels disagree with the reference", fails)
	}
	fmt.Println("self-check passed: every kernel agrees with the reference")
	return nil
}

// selfcheckJSON is selfcheck's --json: each check's name, wall time and
// failure ("" when it agrees); the command fails as the text form does.
func selfcheckJSON(w *gpu.WebGPU, device string, seed uint64) error {
	type check struct {
		Name    string  `json:"name"`
		Ms      float64 `json:"ms"`
		OK      bool    `json:"ok"`
		Failure string  `json:"failure,omitempty"`
	}
	var checks []check
	fails := 0
	for _, c := range conformance.GPT2 {
		r := conformance.Check(c, ref.New(), w, seed)
		ck := check{Name: c.Name, Ms: float64(r.Elapsed.Microseconds()) / 1000, OK: true}
		if err := r.Err(); err != nil {
			ck.OK, ck.Failure = false, err.Error()
			fails++
		}
		checks = append(checks, ck)
	}
	if err := printJSON(os.Stdout, map[string]any{"device": device, "matmul_variant": w.MatMulVariant, "seed": seed, "checks": checks, "passed": fails == 0}); err != nil {
		return err
	}
	if fails > 0 {
		return fmt.Errorf("self-check: %d of the kernels disagree with the reference", fails)
	}
	return nil
}
