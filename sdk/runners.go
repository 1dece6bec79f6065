package sdk

import "time"

// runnerIdleTimeout is how long a task runner waits for its next task
// before it exits.
const runnerIdleTimeout = 10 * time.Second

// runnerPool runs each task on a goroutine that then waits for the next one
// instead of exiting. A goroutine's stack starts small and a task's call
// chain (handler, Complete, the backend call) grows it; with a fresh
// goroutine per task, every job paid that stack copy (7% of the process's
// CPU in a claim-latency profile). A runner is started only when none
// waits, so about MaxConcurrency exist (a few more when tasks start while
// runners are still ending their last ones; the idle timeout trims them).
type runnerPool struct {
	exec  func(*Task)
	queue chan *Task // unbuffered: a waiting runner takes the task
	stop  chan struct{}
}

func newRunnerPool(exec func(*Task)) *runnerPool {
	return &runnerPool{exec: exec, queue: make(chan *Task), stop: make(chan struct{})}
}

// run runs t on a waiting runner, or on a new one when none waits.
func (p *runnerPool) run(t *Task) {
	select {
	case p.queue <- t:
	default:
		go p.loop(t)
	}
}

func (p *runnerPool) loop(t *Task) {
	idle := time.NewTimer(runnerIdleTimeout)
	defer idle.Stop()
	for {
		p.exec(t)
		idle.Reset(runnerIdleTimeout)
		select {
		case t = <-p.queue:
		case <-idle.C:
			return
		case <-p.stop:
			return
		}
	}
}

// close makes every runner exit once it waits: the waiting ones now, a
// busy one when its task ends (a handler that ignores its cancelled
// context may outlive the worker's Run; its runner goes with it).
func (p *runnerPool) close() { close(p.stop) }
