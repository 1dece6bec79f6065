package sdk

import "sync"

// runningSet is the tasks a worker runs now: for the drain at shutdown, and
// so a claim round skips candidates this worker already runs.
type runningSet struct {
	mu    sync.Mutex
	tasks map[*Task]struct{}
	ids   map[ExecutionID]struct{}
	wg    sync.WaitGroup
}

func newRunningSet() *runningSet {
	return &runningSet{tasks: make(map[*Task]struct{}), ids: make(map[ExecutionID]struct{})}
}

func (s *runningSet) add(t *Task) {
	s.mu.Lock()
	s.tasks[t] = struct{}{}
	s.ids[t.ID] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
}

// remove drops t; done (after its slot is released) ends it for allDone.
func (s *runningSet) remove(t *Task) {
	s.mu.Lock()
	delete(s.tasks, t)
	delete(s.ids, t.ID)
	s.mu.Unlock()
}

func (s *runningSet) done() { s.wg.Done() }

// withIDs runs f with the ids of the running tasks, under the set's lock.
func (s *runningSet) withIDs(f func(running map[ExecutionID]struct{})) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.ids)
}

// snapshot returns the running tasks.
func (s *runningSet) snapshot() []*Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Task, 0, len(s.tasks))
	for t := range s.tasks {
		out = append(out, t)
	}
	return out
}

// allDone returns a channel closed once no task runs.
func (s *runningSet) allDone() <-chan struct{} {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	return done
}
