package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/serve"
)

// demoCmd is `chameleon demo`: a local web server for the browser demo. It
// serves the page (embedded), the wasm build of package wasm and the
// model's files; the model then runs in the browser on its WebGPU.
func demoCmd() *cobra.Command {
	var addr, modelDir, adapterSpec, wasmDir, dtype string
	var lim serve.Limits
	c := &cobra.Command{
		Use:   "demo [--addr 127.0.0.1:8090] [--model DIR] [--adapter FILE|default|none]",
		Short: "Serve the browser demo: the same runtime compiled to WASM, running the model on the browser's WebGPU",
		Long: "Serve the browser demo on a local address. The page loads the model into the browser (cached after\n" +
			"the first load) and runs it there on WebGPU: several prompts, their clusters, and generation with and\n" +
			"without the hyper-network's adaptation. The wasm runtime comes from `make wasm` (bin/wasm; `make demo`\n" +
			"builds it and starts the demo) or --wasm DIR.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			log := cmd.ErrOrStderr()
			if err := checkLimits(lim); err != nil {
				return err
			}
			fsys, label, err := demoModel(modelDir)
			if err != nil {
				return err
			}
			dir, err := findWasm(wasmDir)
			if err != nil {
				return err
			}
			srv, err := newDemoServer(demoConfig{Model: fsys, Label: label, Adapter: adapterSpec, WasmDir: dir, DType: dtype})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listening on %s: %w", addr, err)
			}
			fmt.Fprintf(log, "chameleon: demo of %s (%s) on http://%s/ — open it in a browser with WebGPU\n", label, srv.adapterNote(), ln.Addr())
			hs, cl, err := serve.NewHTTPServer(srv, ln, lim)
			if err != nil {
				ln.Close()
				return err
			}
			served := make(chan error, 1)
			go func() { served <- hs.Serve(cl) }()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			select {
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return hs.Shutdown(sctx)
			case err := <-served:
				return err
			}
		},
	}
	f := c.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8090", "listen address (host:port; port 0 picks a free one)")
	f.StringVar(&modelDir, "model", "", "Hugging Face GPT-2 directory (config.json + model.safetensors, optional encoder.json + vocab.bpe) (default: the embedded model)")
	f.StringVar(&adapterSpec, "adapter", "default", "hyper-network adapter file, \"default\" (hyper.safetensors in the model directory, if any) or \"none\"")
	f.StringVar(&wasmDir, "wasm", "", "directory holding chameleon.wasm and wasm_exec.js (default: bin/wasm beside the binary or in the working directory, from 'make wasm')")
	f.StringVar(&dtype, "dtype", "f16", "weight dtype on the browser's GPU: f16 or f32, or q8_0, q4_0, q4_k (the layer matrices quantized in the browser at load)")
	addLimitFlags(c, &lim)
	return c
}

// demoModel is the model directory to serve: --model, else the embedded
// default model.
func demoModel(dir string) (fs.FS, string, error) {
	if dir != "" {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, "", fmt.Errorf("--model: %w", err)
		}
		if !st.IsDir() {
			return nil, "", fmt.Errorf("--model %s: the demo serves a Hugging Face directory (config.json + model.safetensors); convert a GGUF file with `chameleon convert`", dir)
		}
		return os.DirFS(dir), filepath.Base(filepath.Clean(dir)), nil
	}
	fsys, err := defaults.Model()
	if errors.Is(err, defaults.ErrMissing) {
		return nil, "", fmt.Errorf("this build embeds no default model yet: pass --model DIR (a Hugging Face GPT-2 directory; " +
			"`chameleon init --config tiny --out DIR` makes a random one to try the demo)")
	}
	if err != nil {
		return nil, "", err
	}
	return fsys, "the default model", nil
}

// findWasm locates the wasm runtime that `make wasm` writes: --wasm, else
// bin/wasm beside the chameleon binary or under the working directory. It
// builds nothing: a missing runtime is an error that says how to make it.
func findWasm(flag string) (string, error) {
	complete := func(dir string) bool {
		for _, n := range []string{"chameleon.wasm", "wasm_exec.js"} {
			if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
				return false
			}
		}
		return true
	}
	if flag != "" {
		if !complete(flag) {
			return "", fmt.Errorf("--wasm %s: needs chameleon.wasm and wasm_exec.js (`make wasm` writes them to bin/wasm)", flag)
		}
		return flag, nil
	}
	var cands []string
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(exe), "wasm"))
	}
	cands = append(cands, filepath.Join("bin", "wasm"))
	for _, d := range cands {
		if complete(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("no wasm runtime found (looked in %s): run `make wasm` (or `make demo`, which builds it and starts the demo) in Chameleon's source tree, or pass --wasm DIR", strings.Join(cands, ", "))
}
