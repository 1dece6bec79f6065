package sdk

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// The Task's attempt stream (needs a backend with RoleStreams; without one
// the calls return an Unavailable error).

// emitQueueMax bounds the frames a task queues ahead of the server: Emit
// waits for room beyond it.
const emitQueueMax = 4096

// emitter sends a task's frames in order, batched: while one append is in
// flight, the frames emitted meanwhile gather into the next.
type emitter struct {
	mu       sync.Mutex
	queue    []Frame
	sending  bool
	err      error         // the first failed append's: later Emits and Flush return it
	idle     chan struct{} // closed when the queue is empty and nothing is in flight
	room     chan struct{} // closed when the queue has room again
	summary  []byte        // the summary document as this task last wrote it
	version  uint64        // its version
	loaded   bool          // summary and version are known
	sumMu    sync.Mutex    // serialises summary updates
	streamer Streamer
}

func (t *Task) streamer(op string) (Streamer, error) {
	if s := t.w.roles.Streamer; s != nil {
		return s, nil
	}
	return nil, Unavailable(op)
}

func (t *Task) emitterFor(op string) (*emitter, error) {
	s, err := t.streamer(op)
	if err != nil {
		return nil, err
	}
	t.emitOnce.Do(func() { t.emit.Store(&emitter{streamer: s}) })
	return t.emit.Load(), nil
}

// Emit appends frame to the attempt's stream (durable mode) without waiting
// for the server: frames go out in order, and every frame emitted while one
// append is in flight rides on the next, so a handler emitting tokens
// costs one round trip per batch, not per frame. Emit waits only when
// emitQueueMax frames are queued. An append that failed (the lease was
// lost, say) is returned by every later Emit and by Flush; the frames
// queued behind it are dropped. Terminal calls flush first, so every frame
// emitted before Complete is in the stream when the attempt ends.
func (t *Task) Emit(ctx context.Context, frame Frame) error {
	em, err := t.emitterFor("append_frames")
	if err != nil {
		return err
	}
	if _, err := (AppendArgs{Frames: []Frame{frame}}).Resolve(); err != nil {
		return err
	}
	for {
		em.mu.Lock()
		if em.err != nil {
			err := em.err
			em.mu.Unlock()
			return err
		}
		if len(em.queue) < emitQueueMax {
			em.queue = append(em.queue, frame)
			start := !em.sending
			if start {
				em.sending = true
				em.idle = make(chan struct{})
				go t.sendFrames(em)
			}
			em.mu.Unlock()
			if start {
				// Let the sender run now, on this thread, rather than when
				// the handler next blocks or another thread wakes to steal
				// it (tens of µs when the handler blocks in a system call):
				// the first frame of a burst goes out at once.
				runtime.Gosched()
			}
			return nil
		}
		if em.room == nil {
			em.room = make(chan struct{})
		}
		room := em.room
		em.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sendFrames appends queued frames, a batch per call, until none is left.
func (t *Task) sendFrames(em *emitter) {
	for {
		em.mu.Lock()
		n := min(len(em.queue), MaxFramesPerAppend)
		if n == 0 || em.err != nil {
			em.queue, em.sending = nil, false
			close(em.idle)
			em.mu.Unlock()
			return
		}
		batch := em.queue[:n:n]
		em.queue = em.queue[n:]
		if em.room != nil {
			close(em.room)
			em.room = nil
		}
		em.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), t.h.LeaseTTL+time.Second)
		_, err := em.streamer.AppendFrames(ctx, t.h, AppendArgs{Frames: batch, LastIDOnly: true})
		cancel()
		if err != nil {
			em.mu.Lock()
			em.err = err
			em.mu.Unlock()
			if isFencing(err) {
				t.leaseLost(err)
			}
		}
	}
}

// Flush waits until every frame emitted so far is appended, and returns the
// first failed append's error.
func (t *Task) Flush(ctx context.Context) error {
	em, err := t.emitterFor("append_frames")
	if err != nil {
		return err
	}
	return em.flush(ctx)
}

func (em *emitter) flush(ctx context.Context) error {
	em.mu.Lock()
	idle, sending := em.idle, em.sending
	em.mu.Unlock()
	if sending {
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	em.mu.Lock()
	defer em.mu.Unlock()
	return em.err
}

// flushFrames is what a terminal call does first: the frames emitted
// before it land before the attempt ends (a failure is the append's, not
// the terminal call's: it goes ahead).
func (t *Task) flushFrames(ctx context.Context) {
	if em := t.emit.Load(); em != nil {
		_ = em.flush(ctx)
	}
}

// UpdateSummary merges patch, a JSON Merge Patch (RFC 7386: null removes a
// member), into the attempt's summary document, after every frame emitted
// before it, and returns the document's new version. The patch is kept in
// the stream too, as a frame of type "summary". Readers get the document
// with the backend's ReadSummary.
func (t *Task) UpdateSummary(ctx context.Context, patch []byte) (uint64, error) {
	em, err := t.emitterFor("append_frames")
	if err != nil {
		return 0, err
	}
	if err := em.flush(ctx); err != nil {
		return 0, err
	}
	em.sumMu.Lock()
	defer em.sumMu.Unlock()
	for try := 0; ; try++ {
		if !em.loaded {
			s, err := em.streamer.ReadSummary(ctx, t.ID, t.h.AttemptIndex)
			if err != nil {
				return 0, err
			}
			em.summary, em.version, em.loaded = s.Doc, s.Version, true
		}
		doc, err := MergePatch(em.summary, patch)
		if err != nil {
			return 0, err
		}
		r, err := em.streamer.AppendFrames(ctx, t.h, AppendArgs{Mode: StreamSummary, Summary: doc,
			SummaryVersion: em.version, Frames: []Frame{{Type: "summary", Payload: patch}}})
		if err == nil {
			em.summary, em.version = doc, r.SummaryVersion
			return r.SummaryVersion, nil
		}
		if CodeOf(err) == CodeSummaryConflict && try == 0 {
			em.loaded = false // written elsewhere (an earlier run of this attempt): read it again
			continue
		}
		if isFencing(err) {
			t.leaseLost(err)
		}
		return 0, err
	}
}
