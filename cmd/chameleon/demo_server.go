package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/wasm/web"
)

// The demo's HTTP side: the embedded page, the wasm runtime and the
// model's files, each with a content hash the page caches by.

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
	mod  time.Time // modification time when hashed; zero: unknown (in memory, embedded)
}

// demoServer serves the page, the wasm runtime and the model's files.
type demoServer struct {
	cfg     demoConfig
	files   []demoFile
	mux     *http.ServeMux
	adapter *adapt.Meta // nil: no adaptation
	page    string      // web.Version(): the runtime must have been built with the same
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
	s := &demoServer{cfg: cfg, mux: http.NewServeMux(), page: web.Version()}
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
	s.mux.HandleFunc("GET /download.js", s.static("download.js"))
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
	return fmt.Sprintf("%s adapter, rank %d", s.adapter.KindLabel(), s.adapter.Rank)
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
	var mod time.Time
	if st, err := f.Stat(); err == nil {
		mod = st.ModTime()
	}
	s.files = append(s.files, demoFile{Name: name, Role: role, Size: n, ETag: hex.EncodeToString(h.Sum(nil))[:32], open: open, mod: mod})
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
	json.NewEncoder(w).Encode(map[string]any{"label": s.cfg.Label, "dtype": s.cfg.DType, "page": s.page, "files": s.files}) //nolint:errcheck // the client went away
}

// modelFile serves one model file with its hash as ETag, so the browser's
// HTTP cache revalidates cheaply (304) and the page's Cache API copy is
// keyed by content. A file changed on disk since it was hashed (and
// checked) at startup is refused: its ETag, size and the adapter's check
// would no longer hold, and a browser would cache it under the old hash.
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
		if !f.mod.IsZero() {
			if st, err := file.Stat(); err == nil && (st.Size() != f.Size || !st.ModTime().Equal(f.mod)) {
				http.Error(w, fmt.Sprintf("model file %s changed on disk since chameleon demo started and checked it: restart the demo", name), http.StatusConflict)
				return
			}
		}
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
