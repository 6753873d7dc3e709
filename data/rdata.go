package data

// A reader for R's lazy-load databases (the data/Rdata.rdb + Rdata.rdx pair
// that R packages ship), enough to pull the character vectors out of
// r-cran-janeaustenr without R.
//
// Layout, from R's src/main/serialize.c and src/library/base/R/lazyload.R:
//   - Rdata.rdx is one serialised object (gzip-wrapped, as saveRDS writes it):
//     list(variables = list(name = c(offset, length), ...), references, compressed).
//   - Rdata.rdb is the concatenation of records. With compressed = TRUE a
//     record is a 4-byte big-endian uncompressed length followed by a zlib
//     stream; with compressed = 2 or 3 a type byte follows the length
//     ('Z' zlib, '2' bzip2, '0' stored; 'X' xz is not supported here).
//   - Each decompressed record is an XDR serialisation: "X\n", three ints
//     (format version, writer's R version, minimal R version), for format 3 an
//     int length plus the native encoding name, then one item.
//   - An item starts with an int of flags: type = flags & 0xFF, levels =
//     flags >> 12, has-attributes = bit 9, has-tag = bit 10. A STRSXP (16) is a
//     length and that many CHARSXP (9) items; a CHARSXP is a length (-1 for NA)
//     and the bytes, whose encoding is in the levels (UTF-8, Latin-1, ASCII).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// R SEXP type codes used by the serialiser.
const (
	rSym        = 1
	rList       = 2
	rClo        = 3
	rEnv        = 4
	rProm       = 5
	rLang       = 6
	rSpecial    = 7
	rBuiltin    = 8
	rChar       = 9
	rLgl        = 10
	rInt        = 13
	rReal       = 14
	rCplx       = 15
	rStr        = 16
	rDot        = 17
	rVec        = 19
	rExpr       = 20
	rExtPtr     = 22
	rWeakRef    = 23
	rRaw        = 24
	rS4         = 25
	rAltrep     = 238
	rAttrList   = 239
	rAttrLang   = 240
	rBaseEnv    = 241
	rEmptyEnv   = 242
	rBaseNS     = 250
	rMissingArg = 251
	rUnbound    = 252
	rGlobalEnv  = 253
	rNilValue   = 254
	rRef        = 255
	rPersist    = 247
	rPackage    = 248
	rNamespace  = 249

	rLatin1Mask = 1 << 2
)

// RObject is one deserialised R value: only what a text extractor needs.
// Vectors fill the slice of their type; pairlists (LISTSXP and friends) are
// flattened into Items with their Tags; CHARSXP and SYMSXP use Str.
type RObject struct {
	Type  int
	Str   string     // CHARSXP bytes (as UTF-8), SYMSXP name
	NA    bool       // CHARSXP: NA_character_
	Ints  []int32    // LGLSXP, INTSXP
	Reals []float64  // REALSXP (CPLXSXP: re, im interleaved)
	Raw   []byte     // RAWSXP
	Items []*RObject // STRSXP elements, VECSXP/EXPRSXP elements, pairlist values
	Tags  []string   // pairlists: the tag of each element ("" when none)
	Attr  *RObject   // attributes pairlist, nil when none
}

// Strings returns the elements of a character vector (NA as "") and whether
// o is one.
func (o *RObject) Strings() ([]string, bool) {
	if o == nil || o.Type != rStr {
		return nil, false
	}
	s := make([]string, len(o.Items))
	for i, it := range o.Items {
		s[i] = it.Str
	}
	return s, true
}

// Attribute returns the attribute called name, or nil.
func (o *RObject) Attribute(name string) *RObject {
	if o == nil || o.Attr == nil {
		return nil
	}
	for i, t := range o.Attr.Tags {
		if t == name {
			return o.Attr.Items[i]
		}
	}
	return nil
}

// Names returns the "names" attribute.
func (o *RObject) Names() []string {
	s, _ := o.Attribute("names").Strings()
	return s
}

// rReader decodes one XDR serialisation stream.
type rReader struct {
	b    []byte
	off  int
	refs []*RObject
}

var errRShort = errors.New("rdata: truncated serialisation")

func (r *rReader) int32() (int32, error) {
	if r.off+4 > len(r.b) {
		return 0, errRShort
	}
	v := int32(binary.BigEndian.Uint32(r.b[r.off:]))
	r.off += 4
	return v, nil
}

func (r *rReader) bytes(n int) ([]byte, error) {
	if n < 0 || r.off+n > len(r.b) {
		return nil, errRShort
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v, nil
}

// length reads a vector length: an int, or -1 followed by two ints (long vectors).
func (r *rReader) length() (int, error) {
	n, err := r.int32()
	if err != nil {
		return 0, err
	}
	if n >= 0 {
		if int(n) > len(r.b) { // every element takes at least one byte
			return 0, fmt.Errorf("rdata: vector length %d exceeds the %d-byte record", n, len(r.b))
		}
		return int(n), nil
	}
	if n != -1 {
		return 0, fmt.Errorf("rdata: bad vector length %d", n)
	}
	hi, err := r.int32()
	if err != nil {
		return 0, err
	}
	lo, err := r.int32()
	if err != nil {
		return 0, err
	}
	l := int64(hi)<<32 | int64(uint32(lo))
	if l > int64(len(r.b)) {
		return 0, fmt.Errorf("rdata: long vector length %d exceeds the record", l)
	}
	return int(l), nil
}

// UnserializeR decodes one R XDR serialisation (as written by serialize(),
// saveRDS() without compression, or one decompressed .rdb record).
func UnserializeR(b []byte) (*RObject, error) {
	r := &rReader{b: b}
	magic, err := r.bytes(2)
	if err != nil {
		return nil, err
	}
	if string(magic) != "X\n" {
		return nil, fmt.Errorf("rdata: not an XDR serialisation (starts %q; only format X is supported)", magic)
	}
	version, err := r.int32()
	if err != nil {
		return nil, err
	}
	if _, err := r.bytes(8); err != nil { // writer's and minimal R versions
		return nil, err
	}
	switch version {
	case 2:
	case 3:
		n, err := r.int32()
		if err != nil {
			return nil, err
		}
		if _, err := r.bytes(int(n)); err != nil { // native encoding name
			return nil, err
		}
	default:
		return nil, fmt.Errorf("rdata: serialisation format version %d not supported", version)
	}
	return r.item(0)
}

func latin1ToUTF8(b []byte) string {
	out := make([]byte, 0, len(b)+len(b)/8)
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return string(out)
}
