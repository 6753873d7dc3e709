package gpu

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/wgsl"
)

// The storage layout round-trips, rows are whole words, and the texture
// kernels' hard-coded 32-row weight blocks match the texture layout's.
func TestQuantLayout(t *testing.T) {
	if wgsl.TexBlock != 32 {
		t.Fatalf("wgsl.TexBlock is %d: the quantized texture mat-vecs and quant_unpack.wgsli assume blocks of 32 rows", wgsl.TexBlock)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range quant.Formats {
		for _, k := range []int{256, 768, 256 * 3} {
			if k%f.BlockSize() != 0 {
				continue
			}
			for _, kk := range []int{k, k + 32} { // an odd number of 32-blocks too
				if kk%f.BlockSize() != 0 {
					continue
				}
				rows := 3
				raw := make([]byte, rows*kk/f.BlockSize()*f.BlockBytes())
				for i := range raw {
					raw[i] = byte(rng.IntN(256))
				}
				packed := packQuantRows(f, raw, rows, kk)
				if len(packed) != rows*quantRowWords(f, kk)*4 {
					t.Fatalf("%v K=%d: %d packed bytes, want %d words a row", f, kk, len(packed), quantRowWords(f, kk))
				}
				if back := unpackQuantRows(f, packed, rows, kk); !bytes.Equal(back, raw) {
					t.Fatalf("%v K=%d: the layout does not round-trip", f, kk)
				}
			}
		}
	}
}
