//go:build js

// Command wasm is Chameleon in the browser: the same gpu, model, cluster and
// adapt packages as the CLI, compiled with GOOS=js GOARCH=wasm, driving the
// page's WebGPU. It installs a global `chameleon` object whose functions
// the demo page (wasm/web) calls:
//
//	chameleon.load({config, weights, encoder?, vocab?, hyper?, dtype?}) -> Promise<info>
//	chameleon.tokenize(text) -> [ids]
//	chameleon.generate({prompts, maxTokens, temperature, topK, topP, seed, stopAtEOT, adapt, mode, k}, onText?) -> Promise<run>
//	chameleon.stop() -> bool: end the running generate early (see jsStop)
//	chameleon.logits(text) -> Promise<{t, v, data: Float32Array (t*v)}>
//	chameleon.cluster({prompts, k, mode, seed}) -> Promise<{assign, k, points}>
//	chameleon.pageVersion: web.Version() of the page this runtime was built with
//
// Byte arguments are Uint8Arrays (or ArrayBuffers) fetched by the page.
// A call never panics out into JS: a panic inside a callback ends the Go
// program and with it every later call of the page, so each exported
// function recovers and reports the failure (a rejected Promise). Every call that
// touches the GPU returns a Promise and runs on its own goroutine: buffer
// readback awaits the browser's map promise, which must never happen inside
// a JS callback (the page's event loop would stall). Calls run one at a
// time in the order they were made. The page must keep the instantiated
// module in a global `wasm` (cogentcore/webgpu's upload path reads it).
package main

import (
	"fmt"
	"syscall/js"

	"github.com/chameleon-llm/chameleon/wasm/web"
)

func main() {
	api := js.Global().Get("Object").New()
	api.Set("load", export(jsLoad, rejected))
	api.Set("tokenize", export(jsTokenize, func(string) js.Value { return js.Null() }))
	api.Set("generate", export(jsGenerate, rejected))
	api.Set("stop", export(jsStop, func(string) js.Value { return js.ValueOf(false) }))
	api.Set("logits", export(jsLogits, rejected))
	api.Set("cluster", export(jsCluster, rejected))
	api.Set("pageVersion", web.Version())
	js.Global().Set("chameleon", api)
	if ready := js.Global().Get("onChameleonReady"); ready.Type() == js.TypeFunction {
		ready.Invoke()
	}
	select {} // keep the exported functions alive
}

// export makes fn a JS function that cannot take the Go program down: a
// panic in its synchronous part (a programmer error, or an argument of a
// type syscall/js refuses, such as Get on a string) is recovered, logged
// to the console, and answered with failed(message) instead.
func export(fn func(this js.Value, args []js.Value) any, failed func(msg string) js.Value) js.Func {
	return js.FuncOf(func(this js.Value, args []js.Value) (res any) {
		defer func() {
			if r := recover(); r != nil {
				msg := fmt.Sprintf("internal error: %v", r)
				js.Global().Get("console").Call("error", "chameleon: "+msg)
				res = failed(msg)
			}
		}()
		return fn(this, args)
	})
}

// work serialises the GPU calls: a goroutine holds the token while it runs.
var work = make(chan struct{}, 1)

// promise runs fn on a goroutine, one call at a time, and returns a JS
// Promise of its result. A panic (a programmer error) becomes a rejection,
// the wasm boundary being where such panics are recovered.
func promise(fn func() (any, error)) js.Value {
	var handler js.Func
	handler = js.FuncOf(func(this js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		handler.Release()
		go func() {
			work <- struct{}{}
			defer func() { <-work }()
			v, err := func() (v any, err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("internal error: %v", r)
					}
				}()
				return fn()
			}()
			if err != nil {
				reject.Invoke(js.Global().Get("Error").New(err.Error()))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	return js.Global().Get("Promise").New(handler)
}

// rejected is a Promise that fails at once with msg.
func rejected(msg string) js.Value {
	return js.Global().Get("Promise").Call("reject", js.Global().Get("Error").New(msg))
}

// bytesOf copies the byte argument key of o (a Uint8Array, another
// ArrayBuffer view, or an ArrayBuffer) into Go memory; nil when absent.
// Anything else is an error: syscall/js would panic on it.
func bytesOf(o js.Value, key string) ([]byte, error) {
	v := o.Get(key)
	if v.IsUndefined() || v.IsNull() {
		return nil, nil
	}
	g := js.Global()
	switch u8 := g.Get("Uint8Array"); {
	case v.InstanceOf(u8):
	case v.InstanceOf(g.Get("ArrayBuffer")):
		v = u8.New(v)
	case g.Get("ArrayBuffer").Call("isView", v).Bool():
		v = u8.New(v.Get("buffer"), v.Get("byteOffset"), v.Get("byteLength"))
	default:
		return nil, fmt.Errorf("%s must be a Uint8Array or an ArrayBuffer of the file's bytes", key)
	}
	b := make([]byte, v.Get("length").Int())
	js.CopyBytesToGo(b, v)
	return b, nil
}

// option helpers: a missing field takes the default.
func optInt(o js.Value, key string, def int) int {
	if v := o.Get(key); v.Type() == js.TypeNumber {
		return v.Int()
	}
	return def
}

func optFloat(o js.Value, key string, def float64) float64 {
	if v := o.Get(key); v.Type() == js.TypeNumber {
		return v.Float()
	}
	return def
}

func optString(o js.Value, key, def string) string {
	if v := o.Get(key); v.Type() == js.TypeString {
		return v.String()
	}
	return def
}

func optBool(o js.Value, key string, def bool) bool {
	if v := o.Get(key); v.Type() == js.TypeBoolean {
		return v.Bool()
	}
	return def
}

// strings of a JS array of strings.
func stringsOf(v js.Value) ([]string, error) {
	if !v.InstanceOf(js.Global().Get("Array")) {
		return nil, fmt.Errorf("prompts must be an array of strings")
	}
	out := make([]string, v.Length())
	for i := range out {
		e := v.Index(i)
		if e.Type() != js.TypeString {
			return nil, fmt.Errorf("prompt %d is not a string", i+1)
		}
		out[i] = e.String()
	}
	return out, nil
}

// ints converts Go integers into a JS array.
func ints[T int | int32](xs []T) js.Value {
	a := js.Global().Get("Array").New(len(xs))
	for i, x := range xs {
		a.SetIndex(i, int(x))
	}
	return a
}
