package conformance

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
)

// T is what a check reports through: the part of testing.TB the suite
// uses, so that *testing.T satisfies it. Errorf records a failure and
// goes on; Fatalf records one and stops the check (or the Sub it is in).
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// subber is the optional part of a T that runs named parts of a check.
type subber interface {
	Sub(name string, f func(t T))
}

// Sub runs f as the named part of a check: a Fatalf inside it stops that
// part only. Under a T that cannot run parts, f runs inline.
func Sub(t T, name string, f func(t T)) {
	if s, ok := t.(subber); ok {
		s.Sub(name, f)
		return
	}
	f(t)
}

// Result is what Check found: the failures (each prefixed with the Sub
// path it came from, if any) and the log lines, in order.
type Result struct {
	Name     string
	Seed     uint64
	Failures []string
	Logs     []string
	Elapsed  time.Duration
}

// Err is nil when the check passed, else an error that lists its failures.
func (r Result) Err() error {
	if len(r.Failures) == 0 {
		return nil
	}
	return errors.New(strings.Join(r.Failures, "; "))
}

// Check runs case c on got against ref with the given seed, outside any
// test: failures are collected into the result, a Fatalf stops the check,
// and a panic in an op fails the check with its stack instead of ending
// the program.
func Check(c Case, ref, got gpu.Backend, seed uint64) Result {
	rep := &report{res: &Result{Name: c.Name, Seed: seed}}
	start := time.Now()
	rep.guard(func() { c.Fn(rep, NewPairSeed(rep, ref, got, seed)) })
	rep.res.Elapsed = time.Since(start)
	return *rep.res
}

// report implements T (and Sub) into a Result.
type report struct {
	res    *Result
	prefix string
}

// fatal is the panic value of Fatalf, recovered by guard.
type fatal struct{}

func (r *report) Helper() {}

func (r *report) Logf(format string, args ...any) {
	r.res.Logs = append(r.res.Logs, r.prefix+fmt.Sprintf(format, args...))
}

func (r *report) Errorf(format string, args ...any) {
	r.res.Failures = append(r.res.Failures, r.prefix+fmt.Sprintf(format, args...))
}

func (r *report) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(fatal{})
}

func (r *report) Sub(name string, f func(t T)) {
	sub := &report{res: r.res, prefix: r.prefix + name + ": "}
	sub.guard(func() { f(sub) })
}

// guard runs f, stopping at a Fatalf and turning any other panic into a
// failure: one broken op on a new device still lets the others report.
func (r *report) guard(f func()) {
	defer func() {
		switch p := recover(); p.(type) {
		case nil, fatal:
		default:
			r.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	f()
}
