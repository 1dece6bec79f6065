package bench

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Progress shows what a long run is doing: on a terminal one line redrawn
// in place (stage, elapsed time, a live detail); elsewhere one line per
// stage. A nil writer shows nothing.
type Progress struct {
	w      io.Writer
	tty    bool
	start  time.Time
	mu     sync.Mutex
	stage  string
	detail func() string
	stop   chan struct{}
	done   chan struct{}
}

// NewProgress writes to w (nil: silent). Close it when the run ends.
func NewProgress(w io.Writer) *Progress {
	p := &Progress{w: w, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	if p.tty {
		go p.paint()
	} else {
		close(p.done)
	}
	return p
}

// Stage starts a new stage.
func (p *Progress) Stage(s string) {
	p.mu.Lock()
	p.stage = s
	p.mu.Unlock()
	if p.w != nil && !p.tty {
		fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), s)
	}
}

// Detail sets a live detail for the current stage (nil clears it).
func (p *Progress) Detail(f func() string) {
	p.mu.Lock()
	p.detail = f
	p.mu.Unlock()
}

func (p *Progress) paint() {
	defer close(p.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			fmt.Fprint(p.w, "\r\033[K")
			return
		case <-t.C:
		}
		p.mu.Lock()
		line := fmt.Sprintf("[%6.1fs] %s", time.Since(p.start).Seconds(), p.stage)
		if p.detail != nil {
			line += " · " + p.detail()
		}
		p.mu.Unlock()
		if len(line) > 150 {
			line = line[:150]
		}
		fmt.Fprint(p.w, "\r\033[K"+line)
	}
}

// Close clears the line.
func (p *Progress) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}
