package valkeybackend

import (
	"context"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Attempt streams (sdk.Streamer): ff_append in lua/flowfabric.lua writes;
// reads are plain XRANGE / XREAD (blocking ones on a dedicated connection)
// and HMGETs of the execution record.

var _ sdk.Streamer = (*Backend)(nil)

// AppendFrames appends to h's attempt stream (sdk.Streamer).
func (b *Backend) AppendFrames(ctx context.Context, h sdk.Handle, args sdk.AppendArgs) (sdk.AppendResult, error) {
	const op = "append_frames"
	if _, err := b.handleTag(op, h); err != nil {
		return sdk.AppendResult{}, err
	}
	args, err := args.Resolve()
	if err != nil {
		return sdk.AppendResult{}, opError(op, err)
	}
	ids := "1"
	if args.LastIDOnly {
		ids = "0"
	}
	argv := make([]string, 0, 12+3*len(args.Frames))
	argv = append(argv, fenceArgs(h)...)
	argv = append(argv, strconv.FormatUint(uint64(h.AttemptIndex), 10), string(args.Mode), strconv.Itoa(args.MaxLen),
		strconv.FormatInt(args.TTL.Milliseconds(), 10), string(args.Summary), strconv.FormatUint(args.SummaryVersion, 10),
		strconv.Itoa(len(args.Frames)), ids)
	for _, f := range args.Frames {
		argv = append(argv, f.Type, string(f.Payload), f.CorrelationID)
	}
	r, err := decode(op, b.client.Do(ctx, b.fcall("ff_append",
		[]string{b.ks.keysOf(h.ExecutionID).core, b.ks.streamKey(h.ExecutionID, h.AttemptIndex)}, argv...)))
	if err != nil {
		return sdk.AppendResult{}, err
	}
	return sdk.AppendResult{SummaryVersion: r.uint(0), EntryIDs: r.fields[1:]}, nil
}

// ReadStream returns entries of an attempt's stream after a cursor, with
// its state (sdk.Streamer).
func (b *Backend) ReadStream(ctx context.Context, id sdk.ExecutionID, attempt sdk.AttemptIndex, after string, count int) (sdk.StreamPage, error) {
	const op = "read_stream"
	if _, err := b.partitionOf(op, id); err != nil {
		return sdk.StreamPage{}, err
	}
	if err := sdk.CheckStreamCursor(after); err != nil {
		return sdk.StreamPage{}, opError(op, err)
	}
	if count < 0 {
		return sdk.StreamPage{}, sdk.NewError(op, sdk.CodeInvalidInput, "negative count")
	}
	if count == 0 {
		count = 100
	}
	count = min(count, sdk.MaxStreamRead)
	start := "-"
	if after != "" {
		start = "(" + after
	}
	res := b.client.DoMulti(ctx,
		b.client.B().Xrange().Key(b.ks.streamKey(id, attempt)).Start(start).End("+").Count(int64(count)).Build(),
		b.client.B().Hgetall().Key(b.ks.keysOf(id).core).Build())
	es, err := res[0].AsXRange()
	if err != nil {
		return sdk.StreamPage{}, backendError(op, err)
	}
	core, err := res[1].AsStrMap()
	if err != nil {
		return sdk.StreamPage{}, backendError(op, err)
	}
	if len(core) == 0 {
		return sdk.StreamPage{}, sdk.NewError(op, sdk.CodeExecutionNotFound, "")
	}
	return sdk.StreamPage{Entries: entriesOf(es), StreamState: streamStateOf(core, attempt)}, nil
}

// TailStream waits for entries after a cursor (sdk.Streamer). XREAD BLOCK
// runs on a dedicated connection (valkey-go's for blocking commands), so a
// waiting tail holds none of the shared pipeline.
func (b *Backend) TailStream(ctx context.Context, id sdk.ExecutionID, attempt sdk.AttemptIndex, after string, block time.Duration, count int) ([]sdk.StreamEntry, error) {
	const op = "tail_stream"
	if _, err := b.partitionOf(op, id); err != nil {
		return nil, err
	}
	if err := sdk.CheckStreamCursor(after); err != nil {
		return nil, opError(op, err)
	}
	if block < 0 || count < 0 {
		return nil, sdk.NewError(op, sdk.CodeInvalidInput, "negative block or count")
	}
	if block == 0 {
		block = 5 * time.Second
	}
	block = min(block, sdk.MaxTailBlock)
	if count == 0 {
		count = 100
	}
	count = min(count, sdk.MaxStreamRead)
	if after == "" {
		after = "0-0"
	}
	key := b.ks.streamKey(id, attempt)
	res := b.client.Do(ctx, b.client.B().Xread().Count(int64(count)).Block(max(1, block.Milliseconds())).
		Streams().Key(key).Id(after).Build())
	m, err := res.AsXRead()
	if err != nil {
		if isNil(err) {
			return nil, nil
		}
		return nil, backendError(op, err)
	}
	return entriesOf(m[key]), nil
}

// ReadSummary returns an attempt's summary document (sdk.Streamer).
func (b *Backend) ReadSummary(ctx context.Context, id sdk.ExecutionID, attempt sdk.AttemptIndex) (sdk.Summary, error) {
	const op = "read_summary"
	if _, err := b.partitionOf(op, id); err != nil {
		return sdk.Summary{}, err
	}
	v, err := b.client.Do(ctx, b.client.B().Hmget().Key(b.ks.streamKey(id, attempt)+":summary").Field("doc", "version").Build()).ToArray()
	if err != nil {
		return sdk.Summary{}, backendError(op, err)
	}
	s := sdk.Summary{Doc: []byte("{}")}
	if len(v) == 2 {
		if doc, err := v[0].ToString(); err == nil {
			s.Doc = []byte(doc)
		}
		if ver, err := v[1].ToString(); err == nil {
			s.Version, _ = strconv.ParseUint(ver, 10, 64)
		}
	}
	return s, nil
}

func entriesOf(es []valkey.XRangeEntry) []sdk.StreamEntry {
	out := make([]sdk.StreamEntry, 0, len(es))
	for _, e := range es {
		out = append(out, sdk.StreamEntry{ID: e.ID, At: streamIDTime(e.ID), Frame: sdk.Frame{Type: e.FieldValues["t"],
			Payload: []byte(e.FieldValues["p"]), CorrelationID: e.FieldValues["c"]}})
	}
	return out
}

// streamStateOf derives attempt i's stream state from the execution record:
// closed once a later attempt exists, the execution is terminal, or the
// current attempt ended and the next claim starts another (a failure with
// a retry pending, an interruption requeued: its record has the end); no
// append can pass the fence then. Open while the attempt runs, is
// suspended, or will be resumed (resume: the next claim continues it).
func streamStateOf(core map[string]string, i sdk.AttemptIndex) sdk.StreamState {
	num := func(f string) int64 { return parseInt(core[f]) }
	cur := sdk.AttemptIndex(num("attempt_index"))
	state := sdk.PublicState(core["state"])
	terminal := state.Terminal()
	if i > cur {
		return sdk.StreamState{}
	}
	if i == cur && !terminal {
		if state == sdk.StateActive || state == sdk.StateSuspended || state == sdk.StateWaitingChildren || core["resume"] == "1" {
			return sdk.StreamState{}
		}
		for _, r := range attemptsOf(core) {
			if r.Index == i && !r.EndedAt.IsZero() {
				return sdk.StreamState{Closed: true, ClosedAt: r.EndedAt, CloseReason: r.Outcome}
			}
		}
		return sdk.StreamState{}
	}
	st := sdk.StreamState{Closed: true}
	for _, r := range attemptsOf(core) {
		if r.Index == i {
			st.ClosedAt, st.CloseReason = r.EndedAt, r.Outcome
		}
	}
	if i == cur && terminal {
		if st.CloseReason == "" {
			st.CloseReason = core["state"]
		}
		if st.ClosedAt.IsZero() {
			st.ClosedAt = msTime(num("completed_at"))
		}
	}
	return st
}
