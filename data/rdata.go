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
	"math"
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

const rMaxDepth = 10000

// item reads one serialised item: its flags word, then what its type
// holds. Items that can carry attributes read them last.
func (r *rReader) item(depth int) (*RObject, error) {
	if depth > rMaxDepth {
		return nil, errors.New("rdata: nesting too deep")
	}
	flags, err := r.int32()
	if err != nil {
		return nil, err
	}
	typ := int(flags & 0xFF)
	hasAttr := flags&(1<<9) != 0
	hasTag := flags&(1<<10) != 0
	o := &RObject{Type: typ}
	switch typ {
	case rNilValue, rEmptyEnv, rBaseEnv, rGlobalEnv, rUnbound, rMissingArg, rBaseNS:
		return o, nil
	case rRef:
		return r.reference(flags)
	case rPersist, rPackage, rNamespace:
		return orNil(o, r.persistent(o, depth))
	case rSym:
		return orNil(o, r.symbol(o, depth))
	case rEnv:
		return orNil(o, r.environment(o, depth))
	case rList, rLang, rClo, rProm, rDot, rAttrList, rAttrLang:
		return orNil(o, r.pairlist(o, hasAttr, hasTag, depth))
	case rChar: // a CHARSXP never carries attributes
		return orNil(o, r.charsxp(o, int(flags>>12)))
	case rAltrep:
		return orNil(o, r.altrep(o, depth))
	}
	if err := r.body(o, depth); err != nil {
		return nil, err
	}
	if hasAttr {
		a, err := r.item(depth + 1)
		if err != nil {
			return nil, err
		}
		o.Attr = a
	}
	return o, nil
}

// orNil returns o, or nil with err when reading it failed.
func orNil(o *RObject, err error) (*RObject, error) {
	if err != nil {
		return nil, err
	}
	return o, nil
}

// items reads n items into o.Items.
func (r *rReader) items(o *RObject, n, depth int) error {
	for range n {
		it, err := r.item(depth + 1)
		if err != nil {
			return err
		}
		o.Items = append(o.Items, it)
	}
	return nil
}

// reference resolves a REFSXP: an index into the items read so far, in the
// flags or, when 0 there, in the next int.
func (r *rReader) reference(flags int32) (*RObject, error) {
	idx := int(flags >> 8)
	if idx == 0 {
		v, err := r.int32()
		if err != nil {
			return nil, err
		}
		idx = int(v)
	}
	if idx < 1 || idx > len(r.refs) {
		return nil, fmt.Errorf("rdata: reference %d out of range (%d known)", idx, len(r.refs))
	}
	return r.refs[idx-1], nil
}

// persistent reads a persistent name, package or namespace: a zero, then
// a vector of strings.
func (r *rReader) persistent(o *RObject, depth int) error {
	r.refs = append(r.refs, o)
	if _, err := r.int32(); err != nil { // always 0
		return err
	}
	n, err := r.length()
	if err != nil {
		return err
	}
	return r.items(o, n, depth)
}

// symbol reads a SYMSXP: its name as a CHARSXP.
func (r *rReader) symbol(o *RObject, depth int) error {
	r.refs = append(r.refs, o)
	name, err := r.item(depth + 1)
	if err != nil {
		return err
	}
	o.Str = name.Str
	return nil
}

// environment reads an ENVSXP: the locked flag, then its enclosure,
// frame, hash table and attributes as items.
func (r *rReader) environment(o *RObject, depth int) error {
	r.refs = append(r.refs, o)
	if _, err := r.int32(); err != nil { // locked
		return err
	}
	return r.items(o, 4, depth)
}

// isPairlist reports whether typ is one of the pairlist types.
func isPairlist(typ int) bool {
	switch typ {
	case rList, rLang, rClo, rProm, rDot, rAttrList, rAttrLang:
		return true
	}
	return false
}

// pairlist reads a pairlist, walking the CDR chain iteratively and
// flattening it into o.Items and o.Tags; the attributes of its first
// cell become o.Attr.
func (r *rReader) pairlist(o *RObject, hasAttr, hasTag bool, depth int) error {
	for {
		if hasAttr {
			a, err := r.item(depth + 1)
			if err != nil {
				return err
			}
			if o.Attr == nil {
				o.Attr = a
			}
		}
		tag := ""
		if hasTag {
			t, err := r.item(depth + 1)
			if err != nil {
				return err
			}
			tag = t.Str
		}
		car, err := r.item(depth + 1)
		if err != nil {
			return err
		}
		o.Items = append(o.Items, car)
		o.Tags = append(o.Tags, tag)
		next, err := r.int32()
		if err != nil {
			return err
		}
		switch typ := int(next & 0xFF); {
		case typ == rNilValue:
			return nil
		case !isPairlist(typ):
			// Any other CDR: read it as an item and keep it as a last element.
			r.off -= 4
			cdr, err := r.item(depth + 1)
			if err != nil {
				return err
			}
			o.Items = append(o.Items, cdr)
			o.Tags = append(o.Tags, "")
			return nil
		}
		hasAttr = next&(1<<9) != 0
		hasTag = next&(1<<10) != 0
	}
}

// charsxp reads a CHARSXP: a length (-1 for NA) and the bytes, converted
// to UTF-8 when the levels say Latin-1.
func (r *rReader) charsxp(o *RObject, levels int) error {
	n, err := r.int32()
	if err != nil {
		return err
	}
	if n == -1 {
		o.NA = true
		return nil
	}
	b, err := r.bytes(int(n))
	if err != nil {
		return err
	}
	if levels&rLatin1Mask != 0 {
		o.Str = latin1ToUTF8(b)
	} else {
		o.Str = string(b)
	}
	return nil
}

// altrep reads an ALTREP object: class info, state and attributes; the
// state is kept as the only item.
func (r *rReader) altrep(o *RObject, depth int) error {
	for i := range 3 {
		it, err := r.item(depth + 1)
		if err != nil {
			return err
		}
		switch i {
		case 1:
			o.Items = []*RObject{it}
		case 2:
			if it.Type != rNilValue {
				o.Attr = it
			}
		}
	}
	return nil
}

// body reads what an item of the remaining types holds before its
// attributes: vectors, external and weak references, builtins.
func (r *rReader) body(o *RObject, depth int) error {
	switch o.Type {
	case rExtPtr:
		r.refs = append(r.refs, o)
		for range 2 { // protected value, tag
			if _, err := r.item(depth + 1); err != nil {
				return err
			}
		}
	case rWeakRef:
		r.refs = append(r.refs, o)
	case rSpecial, rBuiltin:
		n, err := r.int32()
		if err != nil {
			return err
		}
		b, err := r.bytes(int(n))
		if err != nil {
			return err
		}
		o.Str = string(b)
	case rLgl, rInt:
		return r.intVector(o)
	case rReal, rCplx:
		return r.realVector(o)
	case rStr, rVec, rExpr:
		n, err := r.length()
		if err != nil {
			return err
		}
		o.Items = make([]*RObject, 0, n)
		return r.items(o, n, depth)
	case rRaw:
		n, err := r.length()
		if err != nil {
			return err
		}
		b, err := r.bytes(n)
		if err != nil {
			return err
		}
		o.Raw = append([]byte(nil), b...)
	case rS4:
	default:
		return fmt.Errorf("rdata: SEXP type %d not supported", o.Type)
	}
	return nil
}

// intVector reads the elements of a logical or integer vector.
func (r *rReader) intVector(o *RObject) error {
	n, err := r.length()
	if err != nil {
		return err
	}
	b, err := r.bytes(4 * n)
	if err != nil {
		return err
	}
	o.Ints = make([]int32, n)
	for i := range o.Ints {
		o.Ints[i] = int32(binary.BigEndian.Uint32(b[4*i:]))
	}
	return nil
}

// realVector reads the elements of a double vector, or the interleaved
// real and imaginary parts of a complex one.
func (r *rReader) realVector(o *RObject) error {
	n, err := r.length()
	if err != nil {
		return err
	}
	if o.Type == rCplx {
		n *= 2
	}
	b, err := r.bytes(8 * n)
	if err != nil {
		return err
	}
	o.Reals = make([]float64, n)
	for i := range o.Reals {
		o.Reals[i] = math.Float64frombits(binary.BigEndian.Uint64(b[8*i:]))
	}
	return nil
}

func latin1ToUTF8(b []byte) string {
	out := make([]byte, 0, len(b)+len(b)/8)
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return string(out)
}
