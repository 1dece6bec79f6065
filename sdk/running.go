package sdk

import (
	"sync"
	"time"
)

// staleHeadWindow is how long after a task ended here its id may still show
// in a cached eligible head: an invalidation push's flight, with margin.
const staleHeadWindow = 250 * time.Millisecond

// runningSet is the tasks a worker runs now (for the drain at shutdown, and
// so a claim round skips candidates this worker already runs), and the ids
// of those that ended within staleHeadWindow.
type runningSet struct {
	mu    sync.Mutex
	tasks map[*Task]struct{}
	ids   map[ExecutionID]struct{}
	ended map[ExecutionID]time.Time
	// pruned is when ended was last pruned (once a window: it holds about
	// two windows' ends).
	pruned time.Time
	wg     sync.WaitGroup
}

func newRunningSet() *runningSet {
	return &runningSet{tasks: make(map[*Task]struct{}), ids: make(map[ExecutionID]struct{}),
		ended: make(map[ExecutionID]time.Time)}
}

func (s *runningSet) add(t *Task) {
	s.mu.Lock()
	s.tasks[t] = struct{}{}
	s.ids[t.ID] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
}

// remove drops t and notes when it ended; done (after its slot is
// released) ends it for allDone.
func (s *runningSet) remove(t *Task) {
	now := time.Now()
	s.mu.Lock()
	delete(s.tasks, t)
	delete(s.ids, t.ID)
	if now.Sub(s.pruned) > staleHeadWindow {
		for id, at := range s.ended {
			if now.Sub(at) > staleHeadWindow {
				delete(s.ended, id)
			}
		}
		s.pruned = now
	}
	s.ended[t.ID] = now
	s.mu.Unlock()
}

func (s *runningSet) done() { s.wg.Done() }

// withIDs runs f, under the set's lock, with the ids of the running tasks
// and a test for an id whose task ended within staleHeadWindow.
func (s *runningSet) withIDs(f func(running map[ExecutionID]struct{}, endedRecently func(ExecutionID) bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	f(s.ids, func(id ExecutionID) bool {
		at, ok := s.ended[id]
		return ok && now.Sub(at) <= staleHeadWindow
	})
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
