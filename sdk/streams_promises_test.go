package sdk_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// Promises of Task.Emit / Flush (sdk/task_streams.go) checked through a
// Worker against a real server.

// spRun runs one execution of lane through a worker running h, and
// returns its id once the handler returned.
func spRun(t *testing.T, b *valkeybackend.Backend, lane sdk.LaneID, h func(ctx context.Context, task *sdk.Task) error) sdk.ExecutionID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	returned := make(chan struct{})
	_, stop := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "sp", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 1},
		sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
			defer close(returned)
			return h(ctx, task)
		}))
	r, err := sdk.NewClient(b).Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-returned:
	case <-ctx.Done():
		t.Fatal("the handler did not return")
	}
	if _, err := sdk.NewClient(b).Wait(ctx, r.ID, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_ = stop()
	return r.ID
}

func spStream(t *testing.T, b *valkeybackend.Backend, id sdk.ExecutionID) ([]string, sdk.StreamState) {
	t.Helper()
	var out []string
	var st sdk.StreamState
	cursor := ""
	for {
		p, err := b.ReadStream(context.Background(), id, 0, cursor, sdk.MaxStreamRead)
		if err != nil {
			t.Fatal(err)
		}
		st = p.StreamState
		if len(p.Entries) == 0 {
			return out, st
		}
		for _, e := range p.Entries {
			out = append(out, string(e.Payload))
		}
		cursor = p.Entries[len(p.Entries)-1].ID
	}
}

// TestEmitPromiseTerminalCallsFlush: "Terminal calls flush first, so every
// frame emitted before Complete is in the stream" — with Complete called at
// once after the emits, with a handler that returns nil (the worker
// completes) and one that returns an error (the worker fails it): every
// frame, in order, once.
func TestEmitPromiseTerminalCallsFlush(t *testing.T) {
	addrs := []string{valkeytest.NewServer(t).Addr()}
	b := e2eConnect(t, addrs)
	const frames = 3000
	emit := func(ctx context.Context, task *sdk.Task) error {
		for i := range frames {
			if err := task.Emit(ctx, sdk.Frame{Type: "tok", Payload: []byte(strconv.Itoa(i))}); err != nil {
				return err
			}
		}
		return nil
	}
	for _, c := range []struct {
		name  string
		h     func(ctx context.Context, task *sdk.Task) error
		state sdk.PublicState
	}{
		{"Complete", func(ctx context.Context, task *sdk.Task) error {
			if err := emit(ctx, task); err != nil {
				return err
			}
			return task.Complete(ctx, []byte("done"))
		}, sdk.StateCompleted},
		{"return nil", emit, sdk.StateCompleted},
		{"return an error", func(ctx context.Context, task *sdk.Task) error {
			if err := emit(ctx, task); err != nil {
				return err
			}
			return errors.New("boom")
		}, sdk.StateFailed},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := spRun(t, b, e2eLane(t, "sp-flush"), c.h)
			got, st := spStream(t, b, id)
			if len(got) != frames {
				t.Fatalf("the stream holds %d of %d frames emitted before the end", len(got), frames)
			}
			for i, p := range got {
				if p != strconv.Itoa(i) {
					t.Fatalf("frame %d = %q", i, p)
				}
			}
			if !st.Closed || st.CloseReason != string(c.state) {
				t.Fatalf("stream state %+v, want closed %s", st, c.state)
			}
		})
	}
}

// TestEmitPromiseInvalidFrame: an invalid frame is refused by Emit itself
// with a typed error (payload_too_large over MaxFrameBytes, a validation
// error for a bad type), nothing appended, and the task's later frames
// still go out.
func TestEmitPromiseInvalidFrame(t *testing.T) {
	addrs := []string{valkeytest.NewServer(t).Addr()}
	b := e2eConnect(t, addrs)
	var errBig, errType, errFlush error
	id := spRun(t, b, e2eLane(t, "sp-invalid"), func(ctx context.Context, task *sdk.Task) error {
		errBig = task.Emit(ctx, sdk.Frame{Type: "t", Payload: make([]byte, sdk.MaxFrameBytes+1)})
		errType = task.Emit(ctx, sdk.Frame{Type: "a b"})
		if err := task.Emit(ctx, sdk.Frame{Type: "t", Payload: []byte("ok")}); err != nil {
			return err
		}
		errFlush = task.Flush(ctx)
		return task.Complete(ctx, nil)
	})
	if sdk.CodeOf(errBig) != sdk.CodePayloadTooLarge || sdk.KindOf(errBig) != sdk.KindValidation {
		t.Fatalf("Emit of a payload over MaxFrameBytes = %v", errBig)
	}
	if sdk.KindOf(errType) != sdk.KindValidation {
		t.Fatalf("Emit with a bad frame type = %v", errType)
	}
	if errFlush != nil {
		t.Fatalf("Flush after refused frames = %v", errFlush)
	}
	if got, _ := spStream(t, b, id); len(got) != 1 || got[0] != "ok" {
		t.Fatalf("stream = %q, want the valid frame alone", got)
	}
}

// TestEmitPromiseLeaseLost: "An append that failed (the lease was lost,
// say) is returned by every later Emit and by Flush; the frames queued
// behind it are dropped": once the lease is revoked, no frame of the old
// holder lands, Flush returns a fence error, and so does every later Emit.
func TestEmitPromiseLeaseLost(t *testing.T) {
	addrs := []string{valkeytest.NewServer(t).Addr()}
	b := e2eConnect(t, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lane := e2eLane(t, "sp-lost")
	flushed := make(chan sdk.ExecutionID, 1)
	revoked := make(chan struct{})
	type result struct{ flush, emit error }
	res := make(chan result, 1)
	_, _ = e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "sp", Lanes: []sdk.LaneID{lane}, MaxConcurrency: 1},
		sdk.HandlerFunc(func(_ context.Context, task *sdk.Task) error {
			bg := context.Background()
			for i := range 10 {
				if err := task.Emit(bg, sdk.Frame{Type: "t", Payload: []byte("before" + strconv.Itoa(i))}); err != nil {
					res <- result{emit: err}
					return err
				}
			}
			if err := task.Flush(bg); err != nil {
				res <- result{flush: err}
				return err
			}
			flushed <- task.ID
			<-revoked
			for i := range 10 {
				_ = task.Emit(bg, sdk.Frame{Type: "t", Payload: []byte("after" + strconv.Itoa(i))})
			}
			var r result
			r.flush = task.Flush(bg)
			r.emit = task.Emit(bg, sdk.Frame{Type: "t", Payload: []byte("later")})
			res <- r
			return nil
		}))
	r, err := sdk.NewClient(b).Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var id sdk.ExecutionID
	select {
	case id = <-flushed:
	case o := <-res:
		t.Fatalf("before the revoke: %+v", o)
	case <-ctx.Done():
		t.Fatal("the handler did not start")
	}
	if id != r.ID {
		t.Fatalf("handler ran %s, want %s", id, r.ID)
	}
	if _, err := b.RevokeLease(ctx, sdk.RevokeLeaseArgs{ExecutionID: id, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	close(revoked)
	var o result
	select {
	case o = <-res:
	case <-ctx.Done():
		t.Fatal("the handler did not finish")
	}
	fence := func(err error) bool {
		return errors.Is(err, sdk.ErrLeaseRevoked) || errors.Is(err, sdk.ErrStaleLease) ||
			errors.Is(err, sdk.ErrLeaseExpired) || errors.Is(err, sdk.ErrExecutionNotActive)
	}
	if !fence(o.flush) {
		t.Fatalf("Flush after the lease was revoked = %v, want a fence error", o.flush)
	}
	if !fence(o.emit) {
		t.Fatalf("Emit after a failed append = %v, want the append's fence error", o.emit)
	}
	got, _ := spStream(t, b, id)
	if len(got) != 10 || got[9] != "before9" {
		t.Fatalf("stream = %q, want the 10 frames emitted before the revoke alone", got)
	}
}

// TestEmitPromiseConnectionsKilled: frames go out "in order" and a failed
// append drops what is queued behind it: with every client connection
// killed while a handler emits, the stream holds a prefix of the frames
// emitted, in order, none twice (a lost reply is not re-sent); when Flush
// reports no error, all of them.
func TestEmitPromiseConnectionsKilled(t *testing.T) {
	addrs := []string{valkeytest.NewServer(t).Addr()}
	b := e2eConnect(t, addrs)
	const frames = 8000 // under StreamMaxLenDefault: nothing trimmed
	killer, err := valkey.NewClient(valkey.ClientOption{InitAddress: addrs, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close()
	var flushErr error
	emitted := 0
	id := spRun(t, b, e2eLane(t, "sp-kill"), func(ctx context.Context, task *sdk.Task) error {
		bg := context.Background()
		for i := range frames {
			if i%500 == 250 {
				_ = killer.Do(bg, killer.B().ClientKill().TypeNormal().SkipmeYes().Build()).Error()
			}
			if err := task.Emit(bg, sdk.Frame{Type: "t", Payload: []byte(strconv.Itoa(i))}); err != nil {
				break
			}
			emitted++
		}
		fctx, cancel := context.WithTimeout(bg, 5*time.Second)
		flushErr = task.Flush(fctx)
		cancel()
		return nil
	})
	got, _ := spStream(t, b, id)
	for i, p := range got {
		if p != strconv.Itoa(i) {
			t.Fatalf("stream entry %d = %q: frames out of order, lost in the middle or repeated (%d entries, %d emitted)", i, p, len(got), emitted)
		}
	}
	if len(got) > emitted {
		t.Fatalf("stream holds %d entries, %d emitted", len(got), emitted)
	}
	if flushErr == nil && len(got) != emitted {
		t.Fatalf("Flush reported no error, yet the stream holds %d of %d frames", len(got), emitted)
	}
	t.Logf("%d emitted, %d in the stream, Flush: %v", emitted, len(got), flushErr)
}
