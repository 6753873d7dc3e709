//go:build js

package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"syscall/js"
	"testing/fstest"
	"time"
	"unicode/utf8"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// state is the loaded model; it is touched only by promise goroutines,
// which run one at a time.
var state struct {
	dev *gpu.Device
	m   *model.Model
	tok *tokenizer.Tokenizer
	rt  *adapt.Runtime // nil without a hyper-network
}

// openDevice opens the page's WebGPU device once, with messages a person
// can act on when the browser has none.
func openDevice() (*gpu.Device, error) {
	if state.dev != nil {
		return state.dev, nil
	}
	if !js.Global().Get("navigator").Get("gpu").Truthy() {
		return nil, errors.New("this browser has no WebGPU (navigator.gpu is missing): use a recent Chrome, Edge or Safari, over https or localhost")
	}
	d, err := gpu.Open(gpu.Options{})
	if err != nil {
		if errors.Is(err, gpu.ErrNoAdapter) {
			return nil, errors.New("WebGPU is present but the browser offers no adapter (GPU blocklisted or disabled; see chrome://gpu)")
		}
		return nil, err
	}
	state.dev = d
	return d, nil
}

// jsLoad: load({config, weights, encoder?, vocab?, hyper?, dtype?}).
func jsLoad(this js.Value, args []js.Value) any {
	if len(args) < 1 || args[0].Type() != js.TypeObject {
		return rejected("load needs an object with the model's files")
	}
	o := args[0]
	files := map[string][]byte{}
	for key, name := range map[string]string{"config": "config.json", "weights": "model.safetensors", "encoder": "encoder.json", "vocab": "vocab.bpe"} {
		b, err := bytesOf(o, key)
		if err != nil {
			return rejected("load: " + err.Error())
		}
		files[name] = b
	}
	hyper, err := bytesOf(o, "hyper")
	if err != nil {
		return rejected("load: " + err.Error())
	}
	dtype := optString(o, "dtype", "f16")
	return promise(func() (any, error) { return load(files, hyper, dtype) })
}

// (Over 80 lines: the browser's load call: arguments, model, tokenizer and
// adapter loaded in order inside one promise.)
func load(files map[string][]byte, hyper []byte, dtype string) (any, error) {
	var dt gpu.DType
	switch dtype {
	case "f16":
		dt = gpu.F16
	case "f32":
		dt = gpu.F32
	default:
		// Quantized layer matrices (embeddings f16), quantized here at load.
		q, err := quant.Parse(dtype)
		if err != nil {
			return nil, fmt.Errorf("dtype %q: want f16, f32, q8_0, q4_0 or q4_k", dtype)
		}
		dt = gpu.QuantDType(q)
	}
	fsys := fstest.MapFS{}
	for name, b := range files {
		if b != nil {
			fsys[name] = &fstest.MapFile{Data: b, Mode: 0o444}
		}
	}
	cfg, host, err := model.LoadHFFS(fsys)
	if err != nil {
		return nil, fmt.Errorf("the model is corrupt or not a GPT-2 checkpoint: %w", err)
	}
	var tok *tokenizer.Tokenizer
	if fsys["encoder.json"] != nil && fsys["vocab.bpe"] != nil {
		tok, err = tokenizer.LoadFS(fsys)
	} else {
		tok, err = tokenizer.NewGPT2()
	}
	if err != nil {
		return nil, err
	}
	if tok.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("the tokenizer has %d tokens but the model's vocabulary is %d", tok.VocabSize(), cfg.VocabSize)
	}
	d, err := openDevice()
	if err != nil {
		return nil, err
	}
	b := gpu.NewWebGPU(d)
	w, err := model.Upload(b, cfg, host, dt)
	if err != nil {
		return nil, fmt.Errorf("uploading the model to the GPU: %w", err)
	}
	m := &model.Model{Cfg: cfg, W: w, B: b}
	var rt *adapt.Runtime
	if hyper != nil {
		base, err := adapt.BaseOf(cfg, host)
		if err != nil {
			return nil, err
		}
		a, err := adapt.Read(bytes.NewReader(hyper), int64(len(hyper)), base)
		if err != nil {
			return nil, fmt.Errorf("the adapter file is corrupt or made for another model: %w", err)
		}
		if rt, err = adapt.NewRuntime(m, a); err != nil {
			return nil, err
		}
	}
	if state.rt != nil {
		state.rt.Free()
	}
	state.m, state.tok, state.rt = m, tok, rt
	warm, err := warmUp()
	if err != nil {
		return nil, fmt.Errorf("the warm-up run (compiling the shaders): %w", err)
	}
	info := map[string]any{
		"warmupSeconds": warm.Seconds(),
		"backend":       b.Name(),
		"dtype":         dtype,
		"vocab":         cfg.VocabSize,
		"context":       cfg.NCtx,
		"embd":          cfg.NEmbd,
		"heads":         cfg.NHead,
		"layers":        cfg.NLayer,
		"params":        cfg.Params(),
		"adapter":       nil,
	}
	if rt != nil {
		hidden := make([]any, len(rt.Meta.Hidden))
		for i, h := range rt.Meta.Hidden {
			hidden[i] = h
		}
		sites := make([]any, len(rt.Meta.Sites))
		for i, s := range rt.Meta.Sites {
			sites[i] = s
		}
		features := rt.Meta.Features
		if features == "" {
			features = adapt.FeatureEmbed
		}
		info["adapter"] = map[string]any{
			"features":  features,
			"kind":      string(rt.Meta.Kind),
			"rank":      rt.Meta.Rank,
			"alpha":     rt.Meta.Alpha,
			"hidden":    hidden,
			"centroids": rt.Meta.Centroids,
			"basis":     rt.Meta.Basis, // a static pair whose components the hyper-network weighs per cluster
			"sites":     sites,         // decoder layers updated at every layer besides the output projection
		}
	}
	return js.ValueOf(info), nil
}

// warmUp runs a small batch through every path the page uses (prefill of
// a longer and a one-token prompt, two decode steps, and with an adapter
// the clustering, hyper-network, adapted decode and scoring), so that the
// browser compiles the shaders now: the time the page then shows for a
// run is generation, not compilation. It returns how long that took.
func warmUp() (time.Duration, error) {
	t0 := time.Now()
	m, tok := state.m, state.tok
	long := tok.Encode("Warm-up: the quick brown fox jumps over the lazy dog, again and again.")
	if n := m.Cfg.NCtx - 3; len(long) > n {
		long = long[:n]
	}
	ids := [][]int32{long, long[:1]}
	opt := model.GenerateOptions{MaxTokens: 2}
	if _, err := m.Generate(tok, ids, opt); err != nil {
		return 0, err
	}
	if state.rt != nil {
		p, err := state.rt.Plan(ids, adapt.PlanOptions{Mode: adapt.ModeBatch, K: 2, Seed: 1})
		if err != nil {
			return 0, err
		}
		defer p.Free()
		if _, err := scores(ids, p); err != nil {
			return 0, err
		}
		opt.Adapter = p.Adapter(nil)
		if _, err := m.Generate(tok, ids, opt); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

// scores is each prompt's next-token log-loss over its own text with the
// base model and with its cluster's update in p: [{tokens, base, adapted}]
// (summed nats; tokens 0 for a one-token prompt, which has nothing to score).
func scores(ids [][]int32, p *adapt.Plan) (js.Value, error) {
	var idx []int // the prompts with something to score (2 tokens or more)
	var seqs [][]int32
	for i, s := range ids {
		if len(s) >= 2 {
			idx, seqs = append(idx, i), append(seqs, s)
		}
	}
	base := make([]model.SequenceScore, len(ids))
	ad := make([]model.SequenceScore, len(ids))
	if len(seqs) > 0 {
		b, err := state.m.ScoreChunked(seqs, func(int) model.Adapter { return nil })
		if err != nil {
			return js.Value{}, err
		}
		// The plan's sequences are all the prompts: a batch's sequence s
		// is scored sequence first+s, prompt idx[first+s].
		a, err := state.m.ScoreChunked(seqs, func(first int) model.Adapter { return p.AdapterOf(idx[first:], nil) })
		if err != nil {
			return js.Value{}, err
		}
		for j, i := range idx {
			base[i], ad[i] = b[j], a[j]
		}
	}
	out := js.Global().Get("Array").New(len(ids))
	for i := range ids {
		out.SetIndex(i, js.ValueOf(map[string]any{"tokens": base[i].Tokens, "base": base[i].NLL, "adapted": ad[i].NLL}))
	}
	return out, nil
}

// pieces is the text of each token of a continuation, for the page to
// mark tokens: a character split across tokens is given whole to the
// token that completes it (the ones before get "").
func pieces(ids []int32) js.Value {
	out := js.Global().Get("Array").New(len(ids))
	var pending []byte
	for i, id := range ids {
		if int(id) < state.tok.VocabSize() && id != state.tok.EOT() {
			pending = append(pending, state.tok.TokenBytes(id)...)
		}
		if utf8.Valid(pending) || len(pending) > 8 {
			out.SetIndex(i, string(pending))
			pending = pending[:0]
		} else {
			out.SetIndex(i, "")
		}
	}
	return out
}

func loaded() error {
	if state.m == nil {
		return errors.New("no model is loaded")
	}
	return nil
}

// jsTokenize: tokenize(text) -> ids (synchronous: no GPU work); null
// before a model is loaded or for anything but a string.
func jsTokenize(this js.Value, args []js.Value) any {
	if state.tok == nil || len(args) < 1 || args[0].Type() != js.TypeString {
		return js.Null()
	}
	return ints(state.tok.Encode(args[0].String()))
}

// encode tokenizes prompts and checks them against the context.
func encode(prompts []string) ([][]int32, error) {
	if len(prompts) == 0 {
		return nil, errors.New("enter at least one prompt")
	}
	ids := make([][]int32, len(prompts))
	for i, p := range prompts {
		ids[i] = state.tok.Encode(p)
		switch {
		case len(ids[i]) == 0:
			return nil, fmt.Errorf("prompt %d is empty", i+1)
		case len(ids[i]) >= state.m.Cfg.NCtx:
			return nil, fmt.Errorf("prompt %d has %d tokens: the model's context is %d tokens, and generating needs room for at least one more; shorten it",
				i+1, len(ids[i]), state.m.Cfg.NCtx)
		}
	}
	return ids, nil
}

// planOptions reads the clustering options shared by cluster and generate.
func planOptions(o js.Value) adapt.PlanOptions {
	return adapt.PlanOptions{
		Mode: adapt.Mode(optString(o, "mode", string(adapt.ModeBatch))),
		K:    optInt(o, "k", 0),
		Seed: uint64(optInt(o, "clusterSeed", 1)),
	}
}

// plan clusters the prompts and makes each cluster's low-rank factors.
func plan(ids [][]int32, po adapt.PlanOptions) (*adapt.Plan, error) {
	if state.rt == nil {
		return nil, errors.New("no hyper-network is loaded: adaptation needs an adapter file (chameleon demo --adapter FILE)")
	}
	return state.rt.Plan(ids, po)
}

// planJS describes a plan for the page: each prompt's cluster and its
// point in the 2-D projection of the features.
func planJS(p *adapt.Plan) js.Value {
	pts := p.Project2D()
	arr := js.Global().Get("Array").New(len(pts))
	for i, pt := range pts {
		arr.SetIndex(i, js.ValueOf([]any{pt[0], pt[1]}))
	}
	return js.ValueOf(map[string]any{"assign": ints(p.Cluster), "k": p.K, "points": arr})
}

// promptsArg reads the options object args[0] of call name and its
// prompts.
func promptsArg(name string, args []js.Value) (js.Value, []string, error) {
	if len(args) < 1 || args[0].Type() != js.TypeObject {
		return js.Value{}, nil, fmt.Errorf("%s needs {prompts: [...]}", name)
	}
	prompts, err := stringsOf(args[0].Get("prompts"))
	return args[0], prompts, err
}

// loadedIDs is the prompts' token ids, once a model is loaded.
func loadedIDs(prompts []string) ([][]int32, error) {
	if err := loaded(); err != nil {
		return nil, err
	}
	return encode(prompts)
}

// jsCluster: cluster({prompts, k, mode, clusterSeed}).
func jsCluster(this js.Value, args []js.Value) any {
	o, prompts, err := promptsArg("cluster", args)
	if err != nil {
		return rejected(err.Error())
	}
	po := planOptions(o)
	return promise(func() (any, error) {
		ids, err := loadedIDs(prompts)
		if err != nil {
			return nil, err
		}
		p, err := plan(ids, po)
		if err != nil {
			return nil, err
		}
		defer p.Free()
		pj := planJS(p)
		sc, err := scores(ids, p)
		if err != nil {
			return nil, err
		}
		pj.Set("scores", sc)
		return pj, nil
	})
}

// jsGenerate: generate(options, onText(seq, text)?).
func jsGenerate(this js.Value, args []js.Value) any {
	o, prompts, err := promptsArg("generate", args)
	if err != nil {
		return rejected(err.Error())
	}
	var onText js.Value
	if len(args) > 1 && args[1].Type() == js.TypeFunction {
		onText = args[1]
	}
	opt := model.GenerateOptions{
		MaxTokens: optInt(o, "maxTokens", 32),
		Sample: gpu.SampleParams{
			Temperature: float32(optFloat(o, "temperature", 0)),
			TopK:        optInt(o, "topK", 0),
			TopP:        float32(optFloat(o, "topP", 1)),
		},
		Seed:      uint64(optInt(o, "seed", 1)),
		StopAtEOT: optBool(o, "stopAtEOT", true),
	}
	adapted := optBool(o, "adapt", false)
	cache := adapted && optBool(o, "cache", false)
	po := planOptions(o)
	return promise(func() (any, error) {
		cancel, done := cancellable() // stop() ends this call early
		defer done()
		opt.Cancel = cancel
		ids, err := loadedIDs(prompts)
		if err != nil {
			return nil, err
		}
		res := map[string]any{"adapted": adapted}
		if adapted {
			p, err := plan(ids, po)
			if err != nil {
				return nil, err
			}
			defer p.Free()
			opt.Adapter = p.Adapter(nil)
			if cache {
				if opt.Adapter, err = cacheAdapter(p, ids); err != nil {
					return nil, err
				}
				res["cache"] = cacheJS(p, len(ids))
			}
			pj := planJS(p)
			sc, err := scores(ids, p)
			if err != nil {
				return nil, err
			}
			pj.Set("scores", sc)
			res["plan"] = pj
		}
		if !onText.IsUndefined() {
			opt.OnText = func(seq int, text []byte) { onText.Invoke(seq, string(text)) }
		}
		t0 := time.Now()
		gens, err := state.m.Generate(state.tok, ids, opt)
		if err != nil {
			return nil, err
		}
		secs := time.Since(t0).Seconds()
		n := 0
		out := js.Global().Get("Array").New(len(gens))
		for i, g := range gens {
			n += len(g.Tokens)
			out.SetIndex(i, js.ValueOf(map[string]any{
				"tokens": ints(g.Tokens), "pieces": pieces(g.Tokens), "text": string(g.Text), "finish": g.Finish, "promptTokens": len(ids[i]),
			}))
		}
		res["results"] = out
		res["seconds"] = secs
		res["tokens"] = n
		res["tokensPerSec"] = float64(n) / max(secs, 1e-9)
		return js.ValueOf(res), nil
	})
}

// jsLogits: logits(text) -> {t, v, data}: the base model's logits at every
// prompt position, (t, v) row-major.
func jsLogits(this js.Value, args []js.Value) any {
	if len(args) < 1 || args[0].Type() != js.TypeString {
		return rejected("logits needs a prompt string")
	}
	prompt := args[0].String()
	return promise(func() (any, error) {
		if err := loaded(); err != nil {
			return nil, err
		}
		ids, err := encode([]string{prompt})
		if err != nil {
			return nil, err
		}
		m := state.m
		c, err := m.NewCache(1, len(ids[0]))
		if err != nil {
			return nil, err
		}
		defer m.FreeCache(c)
		lt, err := m.Forward(c, ids)
		if err != nil {
			return nil, err
		}
		defer m.B.Free(lt)
		data, err := m.B.ReadF32(lt)
		if err != nil {
			return nil, err
		}
		arr := js.Global().Get("Float32Array").New(len(data))
		raw := make([]byte, 4*len(data))
		for i, v := range data {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
		js.CopyBytesToJS(js.Global().Get("Uint8Array").New(arr.Get("buffer")), raw)
		return js.ValueOf(map[string]any{"t": len(ids[0]), "v": m.Cfg.VocabSize, "data": arr}), nil
	})
}
