// Package web holds the browser demo's static page (HTML, JS, CSS),
// embedded so that `chameleon demo` serves it from the binary. The page
// loads the wasm build of package wasm (its API is documented there).
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
)

// Files are index.html, app.js, download.js and style.css at the root.
//
//go:embed index.html app.js download.js style.css
var Files embed.FS

// Version identifies the page's files (its scripts call the runtime). The
// wasm runtime exports the Version it was built with and the demo server
// sends its own in the manifest: when they differ, the runtime in bin/wasm
// is stale against the binary's page (`make wasm` was not run after an
// upgrade), and the page says so before downloading the model.
func Version() string {
	h := sha256.New()
	for _, name := range []string{"index.html", "app.js", "download.js", "style.css"} {
		b, err := Files.ReadFile(name)
		if err != nil {
			panic("web: " + name + " is not embedded: " + err.Error())
		}
		h.Write([]byte(name))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
