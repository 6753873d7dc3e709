package gpu

import (
	"fmt"
	"reflect"
	"strings"
	"unicode"

	"github.com/cogentcore/webgpu/wgpu"
)

// deviceTry is one device request that the adapter refused: which limits
// ("adapter", "needed", "default"), the optional features asked for, and
// the binding's error.
type deviceTry struct {
	limits string
	feats  string
	err    error
}

// refusedError is the error of a device that every request was refused:
// what was requested and the binding's reasons, each stated once.
type refusedError struct {
	needed wgpu.Limits // the limits the kernels need (raised to the adapter's)
	tries  []deviceTry
}

// Unwrap returns the binding's errors.
func (e *refusedError) Unwrap() []error {
	var errs []error
	for _, t := range e.tries {
		errs = append(errs, t.err)
	}
	return errs
}

// Error says what was requested, that the adapter refused it, and the
// binding's reason once (or each distinct reason once, naming the requests
// it answered). It follows the adapter's name: "adapter X refused ...".
func (e *refusedError) Error() string {
	var asked []string
	for _, t := range e.tries {
		s := t.limits + " limits"
		if t.feats != "" {
			s += " with " + t.feats
		}
		asked = append(asked, s)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "refused every device requested: %s", strings.Join(asked, ", then "))
	if d := limitsDiff(e.needed, wgpu.DefaultLimits()); d != "" {
		fmt.Fprintf(&sb, " (needed limits beyond WebGPU's defaults: %s)", d)
	}
	var reasons []string
	which := map[string][]string{}
	for i, t := range e.tries {
		r := reasonText(t.err)
		if _, ok := which[r]; !ok {
			reasons = append(reasons, r)
		}
		which[r] = append(which[r], asked[i])
	}
	if len(reasons) == 1 {
		return sb.String() + "; reason: " + reasons[0]
	}
	sb.WriteString("; reasons: ")
	for i, r := range reasons {
		if i > 0 {
			sb.WriteString("; ")
		}
		fmt.Fprintf(&sb, "%s (%s)", r, strings.Join(which[r], ", "))
	}
	return sb.String()
}

// reasonText is err's message, with cogentcore/webgpu's misspelling of
// "available" (its js binding's "no WebGPU device avaliable") corrected.
func reasonText(err error) string {
	if err == nil {
		return "no error given"
	}
	return strings.ReplaceAll(err.Error(), "avaliable", "available")
}

// limitsDiff lists the limits of l that differ from base, by their WebGPU
// names: "maxBufferSize=17179869184, ...".
func limitsDiff(l, base wgpu.Limits) string {
	lv, bv := reflect.ValueOf(l), reflect.ValueOf(base)
	var out []string
	for i := 0; i < lv.NumField(); i++ {
		f := lv.Type().Field(i)
		if !f.IsExported() || lv.Field(i).Equal(bv.Field(i)) {
			continue
		}
		name := []rune(f.Name)
		name[0] = unicode.ToLower(name[0])
		out = append(out, fmt.Sprintf("%s=%v", string(name), lv.Field(i).Interface()))
	}
	return strings.Join(out, ", ")
}
