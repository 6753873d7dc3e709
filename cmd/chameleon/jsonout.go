package main

import (
	"encoding/json"
	"io"
)

// printJSON writes v as indented JSON, the output of every command's
// --json (schemas: docs/cli-json.md; keys are snake_case).
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
