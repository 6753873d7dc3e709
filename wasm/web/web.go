// Package web holds the browser demo's static page (HTML, JS, CSS),
// embedded so that `chameleon demo` serves it from the binary. The page
// loads the wasm build of package wasm (its API is documented there).
package web

import "embed"

// Files are index.html, app.js and style.css at the root.
//
//go:embed index.html app.js style.css
var Files embed.FS
