package loadgen

import (
	"context"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// streams passes a worker's attempt-stream calls (sdk.Streamer,
// RoleStreams) to the inner backend: appends go through the kill switch
// and Hooks.OnAppend, as the Backend's writes do; reads pass through.
// Without it the Wrap would hide the role, and a fleet's tasks could not
// Emit.
type streams struct {
	b *Backend
	s sdk.Streamer
}

// streamingBackend is a worker's Backend over a backend with streams but
// no waiting; waitingStreamingBackend one over a backend with both.
type streamingBackend struct {
	*Backend
	streams
}

type waitingStreamingBackend struct {
	*waitingBackend
	streams
}

var (
	_ sdk.Streamer = (*streamingBackend)(nil)
	_ sdk.Streamer = (*waitingStreamingBackend)(nil)
	_ sdk.Waiter   = (*waitingStreamingBackend)(nil)
)

func (x streams) AppendFrames(ctx context.Context, h sdk.Handle, a sdk.AppendArgs) (sdk.AppendResult, error) {
	if err := x.b.dead(); err != nil {
		return sdk.AppendResult{}, err
	}
	on := x.b.hooks.OnAppend
	if on == nil {
		return x.s.AppendFrames(ctx, h, a)
	}
	start := time.Now()
	r, err := x.s.AppendFrames(ctx, h, a)
	on(start, time.Since(start), len(a.Frames), err)
	return r, err
}

func (x streams) ReadStream(ctx context.Context, id sdk.ExecutionID, attempt sdk.AttemptIndex, after string, count int) (sdk.StreamPage, error) {
	return x.s.ReadStream(ctx, id, attempt, after, count)
}

func (x streams) TailStream(ctx context.Context, id sdk.ExecutionID, attempt sdk.AttemptIndex, after string, block time.Duration, count int) ([]sdk.StreamEntry, error) {
	return x.s.TailStream(ctx, id, attempt, after, block, count)
}

func (x streams) ReadSummary(ctx context.Context, id sdk.ExecutionID, attempt sdk.AttemptIndex) (sdk.Summary, error) {
	return x.s.ReadSummary(ctx, id, attempt)
}
