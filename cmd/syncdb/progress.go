package main

import (
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// pullBarDelay: a pull shows a bar only once it has run this long, so that
// quick pulls print nothing.
const pullBarDelay = 500 * time.Millisecond

// progress draws download progress bars (syncdb.Config.Progress) on a
// terminal. A disabled progress does nothing.
type progress struct {
	enabled bool
	w       io.Writer
	now     func() time.Time

	mu    sync.Mutex
	phase string    // of the current download; "" between downloads
	start time.Time // first report of the current phase
	bar   *progressbar.ProgressBar
	total int64 // the bar's length; 0 for a spinner
}

func newProgress(w io.Writer, enabled bool) *progress {
	return &progress{enabled: enabled, w: w, now: time.Now}
}

// report is the syncdb.Config.Progress callback: phase "bootstrap" or
// "pull", pages received so far and the total (0 if unknown).
func (p *progress) report(phase string, pages, total int64) {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if phase != p.phase {
		p.finishLocked()
		p.phase, p.start = phase, p.now()
	}
	if total < 0 {
		total = 0
	}
	if p.bar != nil && (total > 0) != (p.total > 0) {
		p.finishLocked() // a spinner becomes a bar, or the other way round
		p.phase = phase
	}
	if p.bar == nil {
		if phase != "bootstrap" && p.now().Sub(p.start) < pullBarDelay {
			return
		}
		p.bar, p.total = newBar(p.w, phase, total), total
	}
	if total > 0 {
		if total != p.total {
			p.bar.ChangeMax64(total)
			p.total = total
		}
		pages = min(pages, total)
	}
	p.bar.Set64(pages)
}

func newBar(w io.Writer, phase string, total int64) *progressbar.ProgressBar {
	desc := "pulling"
	if phase == "bootstrap" {
		desc = "downloading"
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("pages"),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(80 * time.Millisecond),
		progressbar.OptionClearOnFinish(),
	}
	if total <= 0 {
		// A spinner: render at once, before its ticker goroutine starts.
		return progressbar.NewOptions64(-1, append(opts, progressbar.OptionSetRenderBlankState(true))...)
	}
	return progressbar.NewOptions64(total, opts...)
}

// done ends the current bar, if any, erasing it.
func (p *progress) done() {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
}

func (p *progress) finishLocked() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
	p.phase, p.total = "", 0
}
