package adapt

import (
	"fmt"
	"strings"
)

// checkTensorCount refuses metadata that implies more tensors than the
// file holds before Spec builds them: a hyper adapter's hidden widths are
// a list of any length in a metadata string of up to 100 MB, and each
// implies two tensors (a weight and a bias).
func checkTensorCount(m Meta, have int) error {
	if m.Kind == KindHyper && len(m.Hidden) > have/2 {
		return fmt.Errorf("adapt: hyper adapter metadata lists %d hidden widths, which need at least %d tensors, but the file has %d",
			len(m.Hidden), 2*len(m.Hidden)+2, have)
	}
	return nil
}

// maxListedNames is how many tensor names an error lists.
const maxListedNames = 8

// listNames formats names for an error, the first maxListedNames of them
// and how many more there are.
func listNames(names []string) string {
	if len(names) <= maxListedNames {
		return fmt.Sprintf("[%s]", strings.Join(names, " "))
	}
	return fmt.Sprintf("[%s and %d more]", strings.Join(names[:maxListedNames], " "), len(names)-maxListedNames)
}
