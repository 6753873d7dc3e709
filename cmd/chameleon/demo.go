package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/serve"
	"github.com/chameleon-llm/chameleon/wasm/web"
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
			"without the hyper-network's adaptation. The wasm runtime comes from `make wasm` (bin/wasm), or is built\n" +
			"with the local Go toolchain when run inside the source tree.",
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
			dir, err := findWasm(cmd.Context(), wasmDir, log)
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
	f.StringVar(&wasmDir, "wasm", "", "directory holding chameleon.wasm and wasm_exec.js (default: bin/wasm from 'make wasm', else built now)")
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

// demoConfig is what newDemoServer serves.
type demoConfig struct {
	Model   fs.FS  // the model directory
	Label   string // how the page names the model
	Adapter string // adapter file, "default"/"" (hyper.safetensors in Model, if any) or "none"
	WasmDir string // chameleon.wasm and wasm_exec.js
	DType   string // the browser's weight dtype: f16, f32, q8_0, q4_0 or q4_k
}

// demoFile is one model file the page downloads.
type demoFile struct {
	Name string `json:"name"` // its URL under /model/
	Role string `json:"role"` // config, weights, encoder, vocab or hyper
	Size int64  `json:"size"`
	ETag string `json:"etag"` // SHA-256 of the content: the page's cache key
	open func() (fs.File, error)
}

// demoServer serves the page, the wasm runtime and the model's files.
type demoServer struct {
	cfg     demoConfig
	files   []demoFile
	mux     *http.ServeMux
	adapter *adapt.Meta // nil: no adaptation
}

// newDemoServer checks the model (and adapter) once, so that a broken file
// is reported here rather than only in the browser, and sets up the routes.
func newDemoServer(cfg demoConfig) (*demoServer, error) {
	if cfg.DType == "" {
		cfg.DType = "f16"
	}
	if _, qerr := quant.Parse(cfg.DType); cfg.DType != "f16" && cfg.DType != "f32" && qerr != nil {
		return nil, fmt.Errorf("--dtype %q: want f16, f32, q8_0, q4_0 or q4_k", cfg.DType)
	}
	for _, name := range []string{"chameleon.wasm", "wasm_exec.js"} {
		if _, err := os.Stat(filepath.Join(cfg.WasmDir, name)); err != nil {
			return nil, fmt.Errorf("the wasm runtime is incomplete: %w (run `make wasm`)", err)
		}
	}
	mcfg, host, err := model.LoadHFFS(cfg.Model)
	if err != nil {
		return nil, err
	}
	s := &demoServer{cfg: cfg, mux: http.NewServeMux()}
	fromModel := func(name, role string) error {
		return s.addFile(name, role, func() (fs.File, error) { return cfg.Model.Open(name) })
	}
	if err := fromModel("config.json", "config"); err != nil {
		return nil, err
	}
	if err := fromModel("model.safetensors", "weights"); err != nil {
		return nil, err
	}
	_, e1 := fs.Stat(cfg.Model, "encoder.json")
	_, e2 := fs.Stat(cfg.Model, "vocab.bpe")
	if e1 == nil && e2 == nil {
		if err := fromModel("encoder.json", "encoder"); err != nil {
			return nil, err
		}
		if err := fromModel("vocab.bpe", "vocab"); err != nil {
			return nil, err
		}
	} // else the page uses GPT-2's tokenizer, embedded in the wasm build

	var hyper []byte
	switch cfg.Adapter {
	case "none":
	case "", "default":
		if b, err := fs.ReadFile(cfg.Model, defaults.HyperFile); err == nil {
			hyper = b
		}
	default:
		if hyper, err = os.ReadFile(cfg.Adapter); err != nil {
			return nil, fmt.Errorf("--adapter: %w", err)
		}
	}
	if hyper != nil {
		base, err := adapt.BaseOf(mcfg, host)
		if err != nil {
			return nil, err
		}
		a, err := adapt.Read(bytes.NewReader(hyper), int64(len(hyper)), base)
		if err != nil {
			return nil, fmt.Errorf("adapter: %w", err)
		}
		if a.Meta.Kind != adapt.KindHyper {
			return nil, fmt.Errorf("adapter: the demo shows the hyper-network's per-cluster adaptation; this file is a %s adapter", a.Meta.Kind)
		}
		s.adapter = &a.Meta
		if err := s.addFile("hyper.safetensors", "hyper", func() (fs.File, error) { return memFile(hyper), nil }); err != nil {
			return nil, err
		}
	}

	s.mux.HandleFunc("GET /{$}", s.static("index.html"))
	s.mux.HandleFunc("GET /app.js", s.static("app.js"))
	s.mux.HandleFunc("GET /style.css", s.static("style.css"))
	s.mux.HandleFunc("GET /chameleon.wasm", s.wasmFile("chameleon.wasm", "application/wasm"))
	s.mux.HandleFunc("GET /wasm_exec.js", s.wasmFile("wasm_exec.js", "text/javascript; charset=utf-8"))
	s.mux.HandleFunc("GET /model/manifest.json", s.manifest)
	s.mux.HandleFunc("GET /model/{name}", s.modelFile)
	return s, nil
}

func (s *demoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *demoServer) adapterNote() string {
	if s.adapter == nil {
		return "no adapter: generation without adaptation only"
	}
	return fmt.Sprintf("hyper-network adapter, rank %d", s.adapter.Rank)
}

// addFile records a model file with its size and content hash.
func (s *demoServer) addFile(name, role string, open func() (fs.File, error)) error {
	f, err := open()
	if err != nil {
		return fmt.Errorf("model file %s: %w", name, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("model file %s: %w", name, err)
	}
	s.files = append(s.files, demoFile{Name: name, Role: role, Size: n, ETag: hex.EncodeToString(h.Sum(nil))[:32], open: open})
	return nil
}

// static serves an embedded page file; no-cache makes the browser
// revalidate, so an upgraded binary's page is seen at once.
func (s *demoServer) static(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(web.Files, name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
	}
}

func (s *demoServer) wasmFile(name, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFile(w, r, filepath.Join(s.cfg.WasmDir, name))
	}
}

func (s *demoServer) manifest(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{"label": s.cfg.Label, "dtype": s.cfg.DType, "files": s.files}) //nolint:errcheck // the client went away
}

// modelFile serves one model file with its hash as ETag, so the browser's
// HTTP cache revalidates cheaply (304) and the page's Cache API copy is
// keyed by content.
func (s *demoServer) modelFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, f := range s.files {
		if f.Name != name {
			continue
		}
		file, err := f.open()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer file.Close()
		rs, ok := file.(io.ReadSeeker)
		if !ok {
			b, err := io.ReadAll(file)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			rs = bytes.NewReader(b)
		}
		w.Header().Set("ETag", `"`+f.ETag+`"`)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, name, time.Time{}, rs)
		return
	}
	http.Error(w, "no model file "+name, http.StatusNotFound)
}

// memReader is an in-memory fs.File (memFile makes one over b).
type memReader struct {
	*bytes.Reader
	size int64
}

func memFile(b []byte) fs.File { return &memReader{bytes.NewReader(b), int64(len(b))} }

func (m *memReader) Stat() (fs.FileInfo, error) { return nil, errors.New("no file info") }
func (m *memReader) Close() error               { return nil }

// findWasm locates the wasm runtime: --wasm, else bin/wasm beside the
// chameleon binary or under the working directory (`make wasm`), else it
// is built now with the local Go toolchain when the working directory is
// inside Chameleon's source tree.
func findWasm(ctx context.Context, flag string, log io.Writer) (string, error) {
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
	root, ok := sourceRoot()
	if !ok {
		return "", fmt.Errorf("no wasm runtime found (looked in %s): run `make wasm` in Chameleon's source tree, or pass --wasm DIR", strings.Join(cands, ", "))
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "chameleon", "wasm")
	fmt.Fprintf(log, "chameleon: building the wasm runtime into %s (once; `make wasm` puts it in bin/wasm)\n", out)
	if err := buildWasm(ctx, "", root, out); err != nil {
		return "", err
	}
	return out, nil
}

// sourceRoot finds Chameleon's module root at or above the working directory.
func sourceRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			return dir, strings.Contains(string(b), "module github.com/chameleon-llm/chameleon\n")
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", false
		}
		dir = up
	}
}

// buildWasm compiles package wasm for GOOS=js GOARCH=wasm into
// out/chameleon.wasm and copies the toolchain's wasm_exec.js beside it. goBin
// "" means go on PATH.
func buildWasm(ctx context.Context, goBin, root, out string) error {
	if goBin == "" {
		goBin = "go"
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", filepath.Join(out, "chameleon.wasm"), "./wasm")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the wasm runtime: %v\n%s", err, b)
	}
	gr, err := exec.CommandContext(ctx, goBin, "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	src := filepath.Join(strings.TrimSpace(string(gr)), "lib", "wasm", "wasm_exec.js")
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("the Go toolchain's wasm_exec.js: %w", err)
	}
	return os.WriteFile(filepath.Join(out, "wasm_exec.js"), b, 0o644)
}
