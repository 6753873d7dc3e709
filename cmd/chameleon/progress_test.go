package main

import (
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// TestPlainProgressPhases: a phase after a long first one gets its own
// elapsed time and ETA, not the first phase's pace spread over its steps:
// they count from the phase's first step (its ETA is unknown until a
// second).
func TestPlainProgressPhases(t *testing.T) {
	var b strings.Builder
	c := &fakeClock{t: time.Unix(1000, 0)}
	p := plainProgress(&b, 10*time.Second, c.now)
	for step := 1; step <= 100; step++ { // a first phase of 100 s
		c.advance(time.Second)
		p(step, 100, "train")
	}
	b.Reset()
	for step := 1; step <= 5; step++ { // a second of 2 s a step
		c.advance(2 * time.Second)
		p(step, 10, "validation")
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if lines[0] != "progress: step 1/10 (10%) validation, elapsed 0s, ETA ?" {
		t.Fatalf("first line of the second phase: %q", lines[0])
	}
	b.Reset()
	c.advance(20 * time.Second) // past the interval: the next step reports
	p(6, 10, "validation")
	if got := strings.TrimSpace(b.String()); got != "progress: step 6/10 (60%) validation, elapsed 28s, ETA 22s" {
		t.Fatalf("a later line: %q", got)
	}
	// a job whose steps go back with the same total (a new training run)
	// is a new phase too
	b.Reset()
	c.advance(3 * time.Second)
	p(1, 10, "seed 2")
	if got := strings.TrimSpace(b.String()); got != "progress: step 1/10 (10%) seed 2, elapsed 0s, ETA ?" {
		t.Fatalf("a restarted run: %q", got)
	}
}

// TestPlainProgressResumed: a run resumed at step 50 rates over its own
// steps, and lines come at most every interval, plus the last.
func TestPlainProgressResumed(t *testing.T) {
	var b strings.Builder
	c := &fakeClock{t: time.Unix(1000, 0)}
	p := plainProgress(&b, 10*time.Second, c.now)
	for step := 51; step <= 60; step++ {
		c.advance(time.Second)
		p(step, 60, "resumed")
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{
		"progress: step 51/60 (85%) resumed, elapsed 1s, ETA 9s",
		"progress: step 60/60 (100%) resumed, elapsed 10s, ETA 0s",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines %q, want %q", lines, want)
	}
}
