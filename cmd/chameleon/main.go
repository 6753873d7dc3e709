// Command chameleon is the Chameleon CLI: a GPT-2-class inference runtime on
// WebGPU with batch-aware low-rank adaptation. The commands are thin: the
// work lives in the gpu, model, cluster, adapt, train and serve packages.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// deviceFlag selects the WebGPU adapter (index or name substring); empty
// means CHAMELEON_ADAPTER, else the best adapter.
var deviceFlag string

func main() {
	root := newRoot()
	err := root.Execute()
	if stopProfile != nil {
		stopProfile()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chameleon:", err)
		os.Exit(1)
	}
}

// stopProfile ends --cpuprofile's profile; nil when none runs.
var stopProfile func()

// newRoot is the command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "chameleon",
		Short:         "GPT-2-class inference on WebGPU with batch-aware dynamic low-rank adaptation",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       "-", // --version prints buildVersion (the template below)
	}
	cobra.AddTemplateFunc("chameleonVersion", func() string { return buildVersion().String() })
	root.SetVersionTemplate("{{chameleonVersion}}")
	root.PersistentFlags().StringVar(&deviceFlag, "device", "",
		"WebGPU adapter to run on: index or name substring (as listed by chameleon devices) (default: $CHAMELEON_ADAPTER, else the best GPU, else a CPU adapter)")
	var cpuProfile string
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "",
		"write a Go CPU profile of the command to this file (host-side time: recording, submission, waiting; read with go tool pprof)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkCPUDevice(cmd); err != nil {
			return err
		}
		if cpuProfile == "" {
			return nil
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
		return nil
	}
	root.AddCommand(devicesCmd(), selfcheckCmd(), initCmd(), inspectCmd(), convertCmd(), quantizeCmd(), tokenizeCmd(), generateCmd(), perplexityCmd(), benchCmd(), dataCmd(), serveCmd(), trainCmd(), adaptCmd(), cardCmd(), demoCmd(), runCmd(), soakCmd(), versionCmd())
	root.InitDefaultCompletionCmd()
	registerCompletions(root)
	return root
}

// recovered turns a programmer-error panic inside a command into an error,
// at the CLI boundary, so a user sees one line rather than a stack.
func recovered(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("internal error: %v", r)
		if os.Getenv("CHAMELEON_TRACE") != "" {
			debug.PrintStack()
		}
	}
}
