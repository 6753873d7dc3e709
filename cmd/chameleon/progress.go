package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// newBar is a progress bar with rate and ETA on stderr when stderr is a
// terminal; elsewhere (logs, CI) it draws nothing.
func newBar(desc, unit string) *progressbar.ProgressBar {
	var w io.Writer = io.Discard
	if term.IsTerminal(int(os.Stderr.Fd())) {
		w = os.Stderr
	}
	return progressbar.NewOptions(-1,
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWriter(w),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish())
}

// logProgress writes a plain progress line to w at most every interval when
// stderr is not a terminal (a log file, CI), where the bar draws nothing:
// long jobs stay observable. It returns a function to call with the
// current step, the total and a description.
func logProgress(w io.Writer, interval time.Duration) func(step, total int, desc string) {
	if term.IsTerminal(int(os.Stderr.Fd())) {
		return func(int, int, string) {}
	}
	return plainProgress(w, interval, time.Now)
}

// plainProgress is logProgress's line writer on the clock now. A new phase
// (the total changes, or the step goes back, as when a job's next stage
// starts) restarts the elapsed time and the rate, so that each phase's ETA
// is its own and not the job's earlier phases' pace.
func plainProgress(w io.Writer, interval time.Duration, now func() time.Time) func(step, total int, desc string) {
	start, last := now(), time.Time{} // a phase's first step reports at once
	first, prevStep, prevTotal := -1, 0, -1
	return func(step, total int, desc string) {
		t := now()
		switch {
		case first < 0:
			// the job's first phase began when the reporter was made; a
			// resumed run starts past 0: rate over this run's steps
			first = step - 1
		case total != prevTotal || step < prevStep:
			// a later phase: what ran between the two (an evaluation, a
			// save) is no part of it, so its rate counts from this step
			start, last, first = t, time.Time{}, step
		}
		prevStep, prevTotal = step, total
		if t.Sub(last) < interval && step < total {
			return
		}
		last = t
		el := t.Sub(start)
		eta := "?"
		if done := step - first; done > 0 {
			eta = (time.Duration(float64(el) / float64(done) * float64(total-step))).Round(time.Second).String()
		}
		fmt.Fprintf(w, "progress: step %d/%d (%.0f%%) %s, elapsed %s, ETA %s\n", step, total, 100*float64(step)/float64(max(total, 1)), desc, el.Round(time.Second), eta)
	}
}

// progress reports a long job's progress on stderr: a bar on a terminal,
// else (a log file, CI, a pipe) a plain line at most every interval and
// one at the end, so that a run that is not watched live still shows it is
// moving.
type progress struct {
	bar   *progressbar.ProgressBar
	plain func(step, total int, desc string)
	desc  string
	last  int // the last step reported
	total int
}

// progressInterval is how often a plain progress line is written at most.
const progressInterval = 10 * time.Second

// newProgress reports progress of desc in unit (e.g. "windows").
func newProgress(desc, unit string) *progress {
	return &progress{bar: newBar(desc, unit), plain: logProgress(os.Stderr, progressInterval), desc: desc + " " + unit}
}

// Set reports done of total.
func (p *progress) Set(done, total int) {
	p.bar.ChangeMax(total)
	p.bar.Set(done) //nolint:errcheck // a bar that cannot draw draws nothing
	p.last, p.total = done, total
	p.plain(done, total, p.desc)
}

// Finish ends the bar.
func (p *progress) Finish() { p.bar.Finish() } //nolint:errcheck
