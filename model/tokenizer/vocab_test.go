package tokenizer

import (
	"strings"
	"testing"
)

// TestLoadRefusesDuplicateTokens: an encoder.json that lists a token twice
// states two ids for it; encoding/json kept the last silently (here the
// file's "ab" at 300 vanished and the vocabulary lost an id), so Load must
// refuse it, naming the token and both ids. Data after the object is
// refused too.
func TestLoadRefusesDuplicateTokens(t *testing.T) {
	good := newSynthetic(t, [][2]string{{"a", "b"}}, true)
	if !strings.Contains(good.encoderJSON, `"ab":`) {
		t.Fatalf("synthetic encoder.json has no \"ab\": %.80s", good.encoderJSON)
	}
	for _, tc := range []struct{ name, enc, want string }{
		{"duplicate token", `{"ab":300,` + good.encoderJSON[1:], `"ab" appears twice, with ids 300 and`},
		{"trailing data", good.encoderJSON + `{}`, "after the JSON object"},
		{"trailing garbage", good.encoderJSON + `x`, "after the JSON object"},
		{"not an object", `[1, 2]`, "JSON object"},
		{"cut short", good.encoderJSON[:len(good.encoderJSON)/2], "unexpected EOF"},
	} {
		_, err := Load(strings.NewReader(tc.enc), strings.NewReader(good.vocabBPE))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	if _, err := Load(strings.NewReader(good.encoderJSON+"\n"), strings.NewReader(good.vocabBPE)); err != nil {
		t.Errorf("encoder.json with a trailing newline: %v", err)
	}
}
