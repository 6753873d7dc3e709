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
	start, last, first := time.Now(), time.Now(), -1
	return func(step, total int, desc string) {
		if first < 0 {
			first = step - 1 // a resumed run starts past 0: rate over this run's steps
		}
		if time.Since(last) < interval && step < total {
			return
		}
		last = time.Now()
		el := time.Since(start)
		eta := "?"
		if done := step - first; done > 0 {
			eta = (time.Duration(float64(el) / float64(done) * float64(total-step))).Round(time.Second).String()
		}
		fmt.Fprintf(w, "progress: step %d/%d (%.0f%%) %s, elapsed %s, ETA %s\n", step, total, 100*float64(step)/float64(max(total, 1)), desc, el.Round(time.Second), eta)
	}
}
