package sdk

import (
	"context"
	"time"
)

// EngineMonitor is an optional role: it tells how many engines (the
// processes that run the scanners: ffengine, or scanner.Alongside) are
// alive. Delayed work and retry backoffs are promoted by an engine only, so
// a worker that delays work while none runs warns about it.
type EngineMonitor interface {
	LiveEngines(ctx context.Context) (int, error)
}

// engineCheckEvery bounds how often a worker asks whether an engine is
// alive (only after it delayed work or scheduled a retry).
const engineCheckEvery = time.Minute

// delayedWork runs after a Delay or a retry landed: at most once per
// engineCheckEvery it checks, off the task's path, that an engine is alive
// to promote the work, and logs a warning when none is.
func (w *Worker) delayedWork() {
	em := w.roles.EngineMonitor
	if em == nil {
		return
	}
	now := time.Now().UnixNano()
	last := w.engineChecked.Load()
	if now-last < int64(engineCheckEvery) || !w.engineChecked.CompareAndSwap(last, now) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(w.baseCtx, minCallTimeout)
		defer cancel()
		n, err := em.LiveEngines(ctx)
		if err == nil && n == 0 {
			w.log.Warn("work was delayed or scheduled for retry, but no engine is running: it stays delayed until one starts (run ffengine, or add scanner.Alongside to WorkerConfig.Alongside)")
		}
	}()
}
