package data

// Reading R's lazy-load databases (.rdx index + .rdb records) and .rds
// files; the record format is described at the top of rdata.go.

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// ReadRDS decodes a file written by saveRDS: gzip-wrapped or plain XDR.
func ReadRDS(path string) (*RObject, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("rdata: %s: %w", path, err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("rdata: %s: %w", path, err)
		}
	}
	o, err := UnserializeR(b)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return o, nil
}

// RdbRecord decodes the record of an .rdb file at [off, off+n); compression
// is the "compressed" value of the .rdx (1 = zlib; 2, 3 = typed records).
func RdbRecord(rdb []byte, off, n int64, compression int) (*RObject, error) {
	if off < 0 || n < 4 || off+n > int64(len(rdb)) {
		return nil, fmt.Errorf("rdata: record [%d, +%d) outside the %d-byte .rdb", off, n, len(rdb))
	}
	rec := rdb[off : off+n]
	want := int64(binary.BigEndian.Uint32(rec))
	body := rec[4:]
	kind := byte('Z')
	if compression == 2 || compression == 3 {
		if len(body) == 0 {
			return nil, errRShort
		}
		kind, body = body[0], body[1:]
	}
	var rd io.Reader
	switch kind {
	case 'Z':
		zr, err := zlib.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("rdata: record at %d: %w", off, err)
		}
		rd = zr
	case '2':
		rd = bzip2.NewReader(bytes.NewReader(body))
	case '0':
		rd = bytes.NewReader(body)
	default:
		return nil, fmt.Errorf("rdata: record at %d: compression %q not supported", off, kind)
	}
	out, err := io.ReadAll(io.LimitReader(rd, want+1))
	if err != nil {
		return nil, fmt.Errorf("rdata: record at %d: %w", off, err)
	}
	if int64(len(out)) != want {
		return nil, fmt.Errorf("rdata: record at %d: %d bytes after decompression, header says %d", off, len(out), want)
	}
	return UnserializeR(out)
}

// RVariable is one named object of a lazy-load database.
type RVariable struct {
	Name  string
	Value *RObject
}

// ReadLazyLoadDB reads every variable of the database base+".rdx"/base+".rdb",
// in the order the index lists them.
func ReadLazyLoadDB(base string) ([]RVariable, error) {
	idx, err := ReadRDS(base + ".rdx")
	if err != nil {
		return nil, err
	}
	if idx.Type != rVec {
		return nil, fmt.Errorf("rdata: %s.rdx is not a list", base)
	}
	var vars *RObject
	compression := 1
	for i, name := range idx.Names() {
		switch name {
		case "variables":
			vars = idx.Items[i]
		case "compressed":
			c := idx.Items[i]
			switch {
			case len(c.Ints) == 1:
				compression = int(c.Ints[0])
			case len(c.Reals) == 1:
				compression = int(c.Reals[0])
			}
		}
	}
	if vars == nil || vars.Type != rVec {
		return nil, fmt.Errorf("rdata: %s.rdx has no variables list", base)
	}
	rdb, err := os.ReadFile(base + ".rdb")
	if err != nil {
		return nil, err
	}
	names := vars.Names()
	if len(names) != len(vars.Items) {
		return nil, fmt.Errorf("rdata: %s.rdx: %d variables but %d names", base, len(vars.Items), len(names))
	}
	out := make([]RVariable, 0, len(names))
	for i, name := range names {
		pos := vars.Items[i]
		var off, n int64
		switch {
		case len(pos.Ints) == 2:
			off, n = int64(pos.Ints[0]), int64(pos.Ints[1])
		case len(pos.Reals) == 2:
			off, n = int64(pos.Reals[0]), int64(pos.Reals[1])
		default:
			return nil, fmt.Errorf("rdata: %s.rdx: variable %q has no (offset, length)", base, name)
		}
		v, err := RdbRecord(rdb, off, n, compression)
		if err != nil {
			return nil, fmt.Errorf("%w (variable %q of %s.rdb)", err, name, base)
		}
		out = append(out, RVariable{Name: name, Value: v})
	}
	return out, nil
}
