package main

import (
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
