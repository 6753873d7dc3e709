package tensorfile

import (
	"bytes"
	"strings"
	"testing"
)

// TestSafetensorsDuplicateMetadataKey: the reader refuses duplicate keys in
// the header, which encoding/json would resolve to the last silently, but
// __metadata__ was decoded with encoding/json: a file stating "format"
// twice (an adapter file's format, say) loaded with the second value. It
// must be refused, naming the key.
func TestSafetensorsDuplicateMetadataKey(t *testing.T) {
	const tensor = `"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}`
	for _, c := range []struct{ name, header, want string }{
		{"duplicate key", `{"__metadata__":{"format":"pt","format":"chameleon-adapter"},` + tensor + `}`, `"format" appears twice`},
		{"non-string value", `{"__metadata__":{"format":1},` + tensor + `}`, `"format"`},
		{"not an object", `{"__metadata__":["format"],` + tensor + `}`, "__metadata__"},
	} {
		data := st(c.header, make([]byte, 4))
		f, err := ReadSafetensors(bytes.NewReader(data), int64(len(data)))
		if err == nil {
			t.Errorf("%s: accepted, metadata %v", c.name, f.Metadata)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "__metadata__") {
			t.Errorf("%s: err = %v, want one naming __metadata__ and %s", c.name, err, c.want)
		}
	}
	for _, header := range []string{`{"__metadata__":null,` + tensor + `}`, `{"__metadata__":{},` + tensor + `}`} {
		data := st(header, make([]byte, 4))
		if f, err := ReadSafetensors(bytes.NewReader(data), int64(len(data))); err != nil || f.Metadata == nil || len(f.Metadata) != 0 {
			t.Errorf("%s: %v, %v", header, f, err)
		}
	}
}
