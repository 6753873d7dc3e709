package wgsl

import (
	"strings"
	"testing"
)

// Every kernel expands completely: no include line or placeholder is left.
func TestIncludesExpand(t *testing.T) {
	for _, n := range Names() {
		src := Source(n)
		if strings.Contains(src, "//#include") || strings.Contains(src, "Q_WORDS") {
			t.Errorf("kernel %s: unexpanded include", n)
		}
		if !strings.Contains(src, "fn main(") {
			t.Errorf("kernel %s: no entry point", n)
		}
	}
}

func TestExpandSubstitutes(t *testing.T) {
	src := expand("test", "a\n//#include matmul_coop_start Q_WORDS=params.zz\nb", 0)
	if !strings.HasPrefix(src, "a\n@compute") || !strings.HasSuffix(src, "\nb") || !strings.Contains(src, "params.zz") {
		t.Fatalf("expansion:\n%.200s ... %.100s", src, src[len(src)-100:])
	}
}
