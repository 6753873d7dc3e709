// Package wgsl holds Chameleon's WGSL compute kernels, one kernel per file,
// embedded into the binary. It is data only: the gpu package compiles the
// sources into pipelines and owns their binding layouts.
//
// Kernels come in three forms, all plain files here: hand-written NAME.wgsl;
// generated variants (f16/f32 twins from one NAME.wgsl.tmpl, the quantized
// formats' kernels from one NAME_q.wgsl.tmpl, the unrolled register and
// texture matmuls and low-rank kernels, workgroup-size copies), written by
// `go generate ./wgsl` and checked by TestGenerated (variants.go); and
// shared bodies in NAME.wgsli fragments that kernels pull in with
// `//#include`, expanded by Source.
//
// The fragments stay as the one mechanism for sharing code between
// different kernels (not for making variants of one): a body several
// kernels need verbatim (a quantized format's dequantization, used by the
// tile, mat-vec, cooperative and register matmuls; the layernorm reduction;
// attention's query loop) is kept once, as WGSL has no modules or imports.
// An include is fixed text pasted at a line, its KEY=VALUE arguments fixed
// in the committed kernel: nothing depends on the device or on run-time
// state, so Source(name) is the same on every call and every machine.
// Nothing else rewrites a kernel's source at run time.
//
// Conventions every kernel follows:
//   - tensors are bound in @group(0), in the order the host passes them,
//     read-only inputs first and outputs last;
//   - scalar parameters live in a `Meta` uniform at @group(1) @binding(0)
//     whose layout is mirrored by the host code that dispatches the kernel;
//   - the workgroup size is a named module-scope const;
//   - a header comment states what the kernel computes, its shapes, its
//     dispatch grid and any portability notes.
//
// Portability rules learnt the hard way:
//   - Mesa's lavapipe (22.x) silently ends every loop of an invocation after
//     65,535 iterations in total (fixed-count loops that get unrolled do not
//     count): a kernel with long data-dependent loops must spread the work
//     over invocations so that no invocation runs near that many iterations.
//   - Give every `var` inside a loop body an explicit initialiser: one
//     version of naga did not re-zero an uninitialised var on each pass.
//   - Array sizes must be a const identifier or literal, not an expression.
//   - `meta` is a reserved word; the uniform is named `params`.
//   - A buffer may not be bound read-only and read-write in one dispatch, so
//     no op runs in place.
package wgsl

import (
	"embed"
	"fmt"
	"sort"
	"strings"
)

//go:embed *.wgsl *.wgsli
var files embed.FS

// Source returns the WGSL text of kernel name (the file name without
// ".wgsl"), with its includes expanded. It panics if no such kernel or
// fragment exists: names are fixed at compile time, so a missing one is a
// programmer error.
//
// A line `//#include FRAGMENT KEY=VALUE ...` is replaced by the text of
// FRAGMENT.wgsli (its leading // comment block dropped, up to any include
// line) with every KEY
// replaced by VALUE: kernels that share a long body (the unrolled matmul
// main loops) keep one copy of it. Fragments may include fragments, up to
// maxIncludeDepth deep.
func Source(name string) string {
	b, err := files.ReadFile(name + ".wgsl")
	if err != nil {
		panic(fmt.Sprintf("wgsl: no kernel %q", name))
	}
	return expand(name, string(b), 0)
}

// maxIncludeDepth bounds nested includes (a cycle is a programmer error).
const maxIncludeDepth = 8

func expand(name, src string, depth int) string {
	if !strings.Contains(src, "//#include ") {
		return src
	}
	if depth >= maxIncludeDepth {
		panic(fmt.Sprintf("wgsl: kernel %s: includes nested more than %d deep", name, maxIncludeDepth))
	}
	lines := strings.Split(src, "\n")
	var out []string
	for _, l := range lines {
		args, ok := strings.CutPrefix(l, "//#include ")
		if !ok {
			out = append(out, l)
			continue
		}
		f := strings.Fields(args)
		frag, err := files.ReadFile(f[0] + ".wgsli")
		if err != nil {
			panic(fmt.Sprintf("wgsl: kernel %s includes unknown fragment %q", name, f[0]))
		}
		body := string(frag)
		// The fragment's header comment (an include line may start the body).
		for strings.HasPrefix(body, "//") && !strings.HasPrefix(body, "//#include ") {
			_, body, _ = strings.Cut(body, "\n")
		}
		var subst []string
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				panic(fmt.Sprintf("wgsl: kernel %s: include argument %q is not KEY=VALUE", name, kv))
			}
			subst = append(subst, k, v)
		}
		body = strings.NewReplacer(subst...).Replace(strings.TrimSuffix(body, "\n"))
		out = append(out, expand(name, body, depth+1))
	}
	return strings.Join(out, "\n")
}

// Names lists every embedded kernel, sorted.
func Names() []string {
	ents, err := files.ReadDir(".")
	if err != nil {
		panic("wgsl: " + err.Error())
	}
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".wgsl"); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
