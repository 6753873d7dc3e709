package serve

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
)

// encoding/json matches object keys to fields case-insensitively and lets
// a repeated key overwrite the first, so {"max_tokens": 5, "MAX_TOKENS":
// 256} would run with 256 while a proxy or gateway that reads the body
// with an exact, first-wins or rejecting parser (and enforces its own cap)
// sees 5. exactKeys closes that gap: every key of the request's objects
// must name a field exactly and at most once, as the API's field names
// are written.

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// fieldTypes maps a struct type's JSON names to their field types.
var fieldTypes sync.Map // reflect.Type -> map[string]reflect.Type

func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldTypes.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported() && !f.Anonymous:
			continue
		case name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct: // promoted fields
			for k, v := range jsonFields(f.Type) {
				m[k] = v
			}
			continue
		case name == "":
			name = f.Name
		}
		m[name] = f.Type
	}
	fieldTypes.Store(t, m)
	return m
}

// exactKeys checks the keys of raw, a JSON value that decoded into a t
// without error, against t's fields, down through nested objects and
// arrays of them (json.RawMessage fields are parsed on their own, maps
// hold free keys). It answers a 400 naming the first key that is not a
// field's exact name, or that repeats one, and one for a null element of
// an array of numbers, strings, booleans or objects, which encoding/json
// would read as 0, "", false or an empty object: [1, null] is no list of
// token ids. name is raw's field name, for the error.
func exactKeys(raw []byte, t reflect.Type, name string) *APIError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	raw = bytes.TrimSpace(raw)
	if t == rawMessageType || len(raw) == 0 {
		return nil
	}
	switch {
	case t.Kind() == reflect.Struct && raw[0] == '{':
		return exactObject(raw, t)
	case t.Kind() == reflect.Slice && raw[0] == '[':
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil // the decode that succeeded before is the judge
		}
		for i, it := range items {
			if string(it) == "null" && !nullable(t.Elem()) {
				return badRequest(name, "invalid_type", "%s[%d] is null: want %s", name, i, jsonKind(t.Elem()))
			}
			if e := exactKeys(it, t.Elem(), name); e != nil {
				return e
			}
		}
	}
	return nil
}

// nullable reports whether null is a value of Go type t's own (nil)
// rather than one encoding/json turns into t's zero value.
func nullable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
		return true
	}
	return false
}

// exactObject is exactKeys for one object decoded into struct type t.
func exactObject(raw []byte, t reflect.Type) *APIError {
	fields := jsonFields(t)
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil
		}
		ft, ok := fields[key]
		switch {
		case !ok:
			return badRequest(key, "unknown_field", "unknown field %q (field names are case-sensitive)", key)
		case seen[key]:
			return badRequest(key, "duplicate_field", "field %q appears more than once", key)
		}
		seen[key] = true
		if e := exactKeys(val, ft, key); e != nil {
			return e
		}
	}
	return nil
}
