package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// Checkpoint layout: <out>/checkpoint/ holds
//
//	config.json, model.safetensors  the model (model.SaveHF, f32): loadable by
//	                                 every other command and by transformers
//	optimizer.safetensors            AdamW's moments, "m.<name>" and "v.<name>"
//	state.json                       step, sampler state, loss history
//	train.json                       the run's exact Config
//
// A checkpoint is written whole into checkpoint.tmp, then swapped in with
// renames (the previous one is kept as checkpoint.old until the swap is
// done), so an interrupted save never leaves a damaged checkpoint behind.
const (
	checkpointDir  = "checkpoint"
	optimizerFile  = "optimizer.safetensors"
	stateFile      = "state.json"
	trainFile      = "train.json"
	checkpointTmp  = "checkpoint.tmp"
	checkpointPrev = "checkpoint.old"
)

// momentPrefix names AdamW's first and second moments in optimizer.safetensors.
var momentPrefix = [2]string{"m.", "v."}

// History is the loss record of a run, kept in checkpoints and plotted.
type History struct {
	Train []TrainPoint `json:"train"`
	Val   []EvalPoint  `json:"val"`
}

// TrainPoint is one step's training loss.
type TrainPoint struct {
	Step int     `json:"step"`
	Loss float64 `json:"loss"`
}

// EvalPoint is one evaluation: the validation loss over every evaluated
// token and per domain.
type EvalPoint struct {
	Step     int                `json:"step"`
	Loss     float64            `json:"loss"`
	ByDomain map[string]float64 `json:"by_domain"`
}

// state is state.json.
type state struct {
	Step    int     `json:"step"`
	Sampler []byte  `json:"sampler"` // the sampler's PCG state
	History History `json:"history"`
}

// CheckpointDir is where Run keeps the checkpoint under out.
func CheckpointDir(out string) string { return filepath.Join(out, checkpointDir) }

// saveCheckpoint writes the model, the optimiser, the sampler state, the
// history and the config of a run at the optimiser's step; extra, if set,
// adds files to the new checkpoint before it is swapped in.
func saveCheckpoint(out string, cfg Config, m *Model, opt *AdamW, smp *Sampler, hist History, extra func(string) error) error {
	tmp := filepath.Join(out, checkpointTmp)
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	host, err := m.Host()
	if err != nil {
		return err
	}
	if err := model.SaveHF(tmp, cfg.Model, host, "f32"); err != nil {
		return fmt.Errorf("train: checkpoint: %w", err)
	}
	mt, vt := opt.Moments()
	var ts []tensorfile.Tensor
	for i, name := range m.Names() {
		for k, src := range []gpu.Tensor{mt[i], vt[i]} {
			d, err := m.B.ReadF32(src)
			if err != nil {
				return err
			}
			t, err := tensorfile.FromFloat32(momentPrefix[k]+name, tensorfile.F32, src.Shape(), d)
			if err != nil {
				return err
			}
			ts = append(ts, t)
		}
	}
	if err := writeFile(filepath.Join(tmp, optimizerFile), func(f *os.File) error {
		return tensorfile.WriteSafetensors(f, ts, map[string]string{"format": "chameleon-adamw"})
	}); err != nil {
		return err
	}
	rs, err := smp.State()
	if err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(tmp, stateFile), state{Step: opt.Step, Sampler: rs, History: hist}); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(tmp, trainFile), cfg); err != nil {
		return err
	}
	if extra != nil {
		if err := extra(tmp); err != nil {
			return err
		}
	}
	final, prev := filepath.Join(out, checkpointDir), filepath.Join(out, checkpointPrev)
	if err := os.RemoveAll(prev); err != nil {
		return err
	}
	if err := os.Rename(final, prev); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return os.RemoveAll(prev)
}

func writeFile(path string, fill func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, func(f *os.File) error {
		_, err := f.Write(append(b, '\n'))
		return err
	})
}

// findCheckpoint returns the checkpoint dir under out: checkpoint, or
// checkpoint.old when a save was cut between its two renames; "" if none.
func findCheckpoint(out string) string {
	for _, d := range []string{checkpointDir, checkpointPrev} {
		p := filepath.Join(out, d)
		if _, err := os.Stat(filepath.Join(p, stateFile)); err == nil {
			return p
		}
	}
	return ""
}

// ReadCheckpointConfig reads the Config saved in a checkpoint dir.
func ReadCheckpointConfig(dir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(dir, trainFile))
	if err != nil {
		return c, fmt.Errorf("train: checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("train: %s: %w", filepath.Join(dir, trainFile), err)
	}
	return c, nil
}

// readMoment reads one of AdamW's moments, refusing a shape other than its
// parameter's (a transposed matrix has as many values), a value that is
// not finite, and a negative second moment (its square root is taken):
// any of them would resume training on numbers it never made.
func readMoment(sf *tensorfile.File, key string, shape []int, second bool) ([]float32, error) {
	info, ok := sf.Info(key)
	if !ok {
		return nil, fmt.Errorf("%s is missing", key)
	}
	if !slices.Equal(info.Shape, shape) {
		return nil, fmt.Errorf("%s has shape %v, want %v (its parameter's)", key, info.Shape, shape)
	}
	if err := sf.CheckFinite(key); err != nil {
		return nil, err
	}
	d, err := sf.Float32(key)
	if err != nil {
		return nil, err
	}
	if second {
		for j, x := range d {
			if x < 0 {
				return nil, fmt.Errorf("%s[%d] is %g: a second moment is never negative", key, j, x)
			}
		}
	}
	return d, nil
}

// loadCheckpoint checks that dir's configuration equals cfg (apart from
// side fields), then restores the parameters, moments, step and sampler
// state into m, opt and smp, and returns the history.
func loadCheckpoint(dir string, cfg Config, m *Model, opt *AdamW, smp *Sampler) (History, error) {
	saved, err := ReadCheckpointConfig(dir)
	if err != nil {
		return History{}, err
	}
	if d := saved.Diff(cfg); len(d) > 0 {
		return History{}, fmt.Errorf("train: the checkpoint in %s was made with another configuration (checkpoint -> now): %s; "+
			"resume with the same flags or start a new --out", dir, strings.Join(d, ", "))
	}
	mc, host, err := model.LoadHF(dir)
	if err != nil {
		return History{}, err
	}
	if mc != cfg.Model {
		return History{}, fmt.Errorf("train: %s: config.json says %+v, train.json %+v", dir, mc, cfg.Model)
	}
	for i, h := range host {
		if err := m.B.Write(m.Params()[i], h.Data); err != nil {
			return History{}, err
		}
	}
	path := filepath.Join(dir, optimizerFile)
	f, err := os.Open(path)
	if err != nil {
		return History{}, fmt.Errorf("train: checkpoint: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return History{}, err
	}
	sf, err := tensorfile.ReadSafetensors(f, st.Size())
	if err != nil {
		return History{}, fmt.Errorf("train: %s: %w", path, err)
	}
	mt, vt := opt.Moments()
	for i, name := range m.Names() {
		for k, dst := range []gpu.Tensor{mt[i], vt[i]} {
			d, err := readMoment(sf, momentPrefix[k]+name, dst.Shape(), k == 1)
			if err != nil {
				return History{}, fmt.Errorf("train: %s: %w", path, err)
			}
			if err := m.B.Write(dst, d); err != nil {
				return History{}, err
			}
		}
	}
	var s state
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return History{}, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return History{}, fmt.Errorf("train: %s: %w", filepath.Join(dir, stateFile), err)
	}
	if err := smp.SetState(s.Sampler); err != nil {
		return History{}, fmt.Errorf("train: sampler state: %w", err)
	}
	opt.Step = s.Step
	return s.History, nil
}
