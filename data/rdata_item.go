package data

// The item readers of the R deserialiser: item reads an item's flags and
// hands it to the reader of its SEXP kind (see rdata.go for the format).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

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
