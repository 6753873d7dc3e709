package model

import (
	"bytes"
	"strings"
	"testing"
)

// TestLoadHFConfigAmbiguousKeys: encoding/json matches keys without regard
// to case and keeps the last of duplicates, so a config.json holding both
// "n_head" and "N_HEAD" loaded with the second one's head count, which no
// tensor shape can contradict (any n_head dividing n_embd fits), while
// transformers reads "n_head" and ignores "N_HEAD": the model ran with
// other heads than its checkpoint's, silently. Such a file, and one that
// states a key twice, must be refused, naming the key.
func TestLoadHFConfigAmbiguousKeys(t *testing.T) {
	conf, st := hfBytes(t, fuzzCfg, "f32")
	end := bytes.LastIndexByte(conf, '}')
	if end < 0 || !bytes.Contains(conf, []byte(`"n_head"`)) {
		t.Fatalf("unexpected config.json %s", conf)
	}
	withKey := func(kv string) []byte {
		return []byte(string(conf[:end]) + ", " + kv + string(conf[end:]))
	}
	for _, tc := range []struct {
		name string
		conf []byte
		want string
	}{
		{"key in other case", withKey(`"N_HEAD": 4`), `"N_HEAD"`},
		{"key in title case", withKey(`"N_Head": 1`), `"N_Head"`},
		{"key with a long s", withKey(`"vocab_ſize": 8`), "vocab_ſize"},
		{"duplicate bool key", withKey(`"tie_word_embeddings": true, "tie_word_embeddings": false`), "appears twice"},
		{"duplicate key", withKey(`"n_head": 4`), `"n_head" appears twice`},
		{"duplicate unknown key", withKey(`"architectures": []`), `"architectures" appears twice`},
		{"trailing data", append(conf[:len(conf):len(conf)], []byte(`{}`)...), "after"},
	} {
		cfg, _, err := loadHF(tc.conf, hfConfigFile, bytes.NewReader(st), int64(len(st)), hfWeightsFile, LoadOptions{})
		if err == nil {
			t.Errorf("%s: loaded with %+v", tc.name, cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), hfConfigFile) {
			t.Errorf("%s: err = %v, want one naming %s and %s", tc.name, err, hfConfigFile, tc.want)
		}
	}
	// Keys transformers knows and Chameleon does not read stay accepted.
	cfg, _, err := loadHF(withKey(`"n_special": 0, "task_specific_params": {"x": {"y": 1, "Y": 2}}`), hfConfigFile,
		bytes.NewReader(st), int64(len(st)), hfWeightsFile, LoadOptions{})
	if err != nil || cfg != fuzzCfg {
		t.Fatalf("config.json with extra keys: %+v, %v", cfg, err)
	}
}
