package sdktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// The stream subtests (sdk.Streamer, RoleStreams).

func (e *env) appendFrames(s sdk.Streamer, h sdk.Handle, args sdk.AppendArgs) sdk.AppendResult {
	e.t.Helper()
	r, err := s.AppendFrames(e.ctx, h, args)
	if err != nil {
		e.t.Fatalf("AppendFrames = %v", err)
	}
	if len(r.EntryIDs) != len(args.Frames) {
		e.t.Fatalf("AppendFrames: %d entry ids for %d frames", len(r.EntryIDs), len(args.Frames))
	}
	return r
}

func testStreamRoundTrip(e *env) {
	const lane sdk.LaneID = "sdktest-stream"
	s := need(e, e.roles.Streamer, sdk.RoleStreams)
	id, c := e.claimed(lane)
	bin := binaryPayload()
	frames := []sdk.Frame{{Type: "token", Payload: []byte("hello")}, {Type: "blob", Payload: bin, CorrelationID: "c-1"},
		{Type: "empty", CorrelationID: "c-2"}}
	r := e.appendFrames(s, c.Handle, sdk.AppendArgs{Frames: frames})
	page, err := s.ReadStream(e.ctx, id, c.Handle.AttemptIndex, "", 0)
	e.must("ReadStream", err)
	if page.Closed || len(page.Entries) != 3 {
		e.t.Fatalf("ReadStream = %d entries, closed %v; want 3, open", len(page.Entries), page.Closed)
	}
	for i, en := range page.Entries {
		if en.ID != r.EntryIDs[i] || en.Type != frames[i].Type || !bytes.Equal(en.Payload, frames[i].Payload) ||
			en.CorrelationID != frames[i].CorrelationID || en.At.IsZero() {
			e.t.Fatalf("entry %d = %+v, want %+v as %s", i, en, frames[i], r.EntryIDs[i])
		}
	}
	page, err = s.ReadStream(e.ctx, id, c.Handle.AttemptIndex, r.EntryIDs[0], 1)
	e.must("ReadStream after a cursor", err)
	if len(page.Entries) != 1 || page.Entries[0].ID != r.EntryIDs[1] {
		e.t.Fatalf("ReadStream after %s, count 1 = %+v", r.EntryIDs[0], page.Entries)
	}

	// A tail waiting past the last entry gets the next append.
	got := make(chan []sdk.StreamEntry, 1)
	go func() {
		es, err := s.TailStream(e.ctx, id, c.Handle.AttemptIndex, r.EntryIDs[2], 3*time.Second, 0)
		if err != nil {
			e.t.Errorf("TailStream = %v", err)
		}
		got <- es
	}()
	e.sleep(50 * time.Millisecond)
	r2 := e.appendFrames(s, c.Handle, sdk.AppendArgs{Frames: []sdk.Frame{{Type: "token", Payload: []byte("late")}}})
	select {
	case es := <-got:
		if len(es) != 1 || es[0].ID != r2.EntryIDs[0] || string(es[0].Payload) != "late" {
			e.t.Fatalf("TailStream = %+v, want the late frame %s", es, r2.EntryIDs[0])
		}
	case <-time.After(settleDeadline):
		e.t.Fatal("TailStream did not return the appended frame")
	}
	if es, err := s.TailStream(e.ctx, id, c.Handle.AttemptIndex, r2.EntryIDs[0], 50*time.Millisecond, 0); err != nil || len(es) != 0 {
		e.t.Fatalf("TailStream with nothing new = %+v, %v; want none", es, err)
	}

	// The attempt ends: its stream closes, appends are refused.
	e.must("Complete", e.b.Complete(e.ctx, c.Handle, nil))
	e.rejects("AppendFrames after the attempt ended", func() error {
		_, err := s.AppendFrames(e.ctx, c.Handle, sdk.AppendArgs{Frames: frames[:1]})
		return err
	}, sdk.ErrExecutionNotActive)
	page, err = s.ReadStream(e.ctx, id, c.Handle.AttemptIndex, "", 0)
	e.must("ReadStream of a closed stream", err)
	if !page.Closed || page.CloseReason != string(sdk.StateCompleted) || page.ClosedAt.IsZero() || len(page.Entries) != 4 {
		e.t.Fatalf("closed stream: %d entries, %+v", len(page.Entries), page.StreamState)
	}
}

func testStreamFencingAndLimits(e *env) {
	const lane sdk.LaneID = "sdktest-stream-fence"
	s := need(e, e.roles.Streamer, sdk.RoleStreams)
	_, c := e.claimed(lane)
	for _, bad := range []struct {
		what string
		args sdk.AppendArgs
		want error
	}{
		{"no frames", sdk.AppendArgs{}, sdk.ErrValidation},
		{"a frame type with a space", sdk.AppendArgs{Frames: []sdk.Frame{{Type: "a b"}}}, sdk.ErrValidation},
		{"a payload over the limit", sdk.AppendArgs{Frames: []sdk.Frame{{Type: "t", Payload: make([]byte, sdk.MaxFrameBytes+1)}}},
			codeErr(sdk.CodePayloadTooLarge)},
		{"too many frames", sdk.AppendArgs{Frames: make([]sdk.Frame, sdk.MaxFramesPerAppend+1)}, sdk.ErrValidation},
		{"an unknown mode", sdk.AppendArgs{Mode: "forever", Frames: []sdk.Frame{{Type: "t"}}}, sdk.ErrValidation},
	} {
		e.rejects("AppendFrames with "+bad.what, func() error {
			_, err := s.AppendFrames(e.ctx, c.Handle, bad.args)
			return err
		}, bad.want)
	}
	e.revoke(c.Handle)
	e.rejects("AppendFrames with a revoked lease", func() error {
		_, err := s.AppendFrames(e.ctx, c.Handle, sdk.AppendArgs{Frames: []sdk.Frame{{Type: "t"}}})
		return err
	}, sdk.ErrLeaseRevoked, sdk.ErrStaleLease)
	if _, err := s.ReadStream(e.ctx, c.Handle.ExecutionID, c.Handle.AttemptIndex, "nonsense", 0); !isValidation(err) {
		e.t.Fatalf("ReadStream with a malformed cursor = %v, want a validation error", err)
	}
}

func isValidation(err error) bool { return sdk.KindOf(err) == sdk.KindValidation }

func testStreamSummary(e *env) {
	const lane sdk.LaneID = "sdktest-stream-summary"
	s := need(e, e.roles.Streamer, sdk.RoleStreams)
	id, c := e.claimed(lane)
	sum, err := s.ReadSummary(e.ctx, id, c.Handle.AttemptIndex)
	e.must("ReadSummary before any", err)
	if string(sum.Doc) != "{}" || sum.Version != 0 {
		e.t.Fatalf("empty summary = %s v%d", sum.Doc, sum.Version)
	}
	doc := []byte("{}")
	var version uint64
	for _, patch := range []string{`{"a":1,"b":{"c":"x","d":[1,2]},"n":"1.50"}`, `{"b":{"c":null,"e":true},"a":null,"z":[]}`} {
		merged, err := sdk.MergePatch(doc, []byte(patch))
		e.must("MergePatch", err)
		r := e.appendFrames(s, c.Handle, sdk.AppendArgs{Mode: sdk.StreamSummary, Summary: merged, SummaryVersion: version,
			Frames: []sdk.Frame{{Type: "summary", Payload: []byte(patch)}}})
		if r.SummaryVersion != version+1 {
			e.t.Fatalf("summary version %d, want %d", r.SummaryVersion, version+1)
		}
		doc, version = merged, r.SummaryVersion
	}
	sum, err = s.ReadSummary(e.ctx, id, c.Handle.AttemptIndex)
	e.must("ReadSummary", err)
	var got, want any
	e.must("summary JSON", json.Unmarshal(sum.Doc, &got))
	e.must("want JSON", json.Unmarshal([]byte(`{"b":{"d":[1,2],"e":true},"n":"1.50","z":[]}`), &want))
	if !reflect.DeepEqual(got, want) || sum.Version != 2 {
		e.t.Fatalf("summary = %s v%d, want the merged document v2", sum.Doc, sum.Version)
	}
	e.rejects("a summary append onto a stale version", func() error {
		_, err := s.AppendFrames(e.ctx, c.Handle, sdk.AppendArgs{Mode: sdk.StreamSummary, Summary: []byte(`{}`),
			SummaryVersion: 1, Frames: []sdk.Frame{{Type: "summary", Payload: []byte(`{}`)}}})
		return err
	}, codeErr(sdk.CodeSummaryConflict))
	page, err := s.ReadStream(e.ctx, id, c.Handle.AttemptIndex, "", 0)
	e.must("ReadStream", err)
	if len(page.Entries) != 2 {
		e.t.Fatalf("summary frames kept: %d, want 2", len(page.Entries))
	}
	if _, err := sdk.MergePatch([]byte(`{}`), []byte(`not json`)); !isValidation(err) {
		e.t.Fatalf("MergePatch of garbage = %v", err)
	}
	if out, err := sdk.MergePatch([]byte(`{"a":1}`), []byte(`[1]`)); err == nil {
		e.t.Fatalf("MergePatch making the summary an array = %s, want an error", out)
	}
}

// testStreamLive: a live stream keeps about MaxLen frames and expires.
func testStreamLive(e *env) {
	const lane sdk.LaneID = "sdktest-stream-live"
	s := need(e, e.roles.Streamer, sdk.RoleStreams)
	id, c := e.claimed(lane)
	for i := range 5 {
		frames := make([]sdk.Frame, 200)
		for j := range frames {
			frames[j] = sdk.Frame{Type: "tick", Payload: []byte(fmt.Sprint(i*200 + j))}
		}
		e.appendFrames(s, c.Handle, sdk.AppendArgs{Mode: sdk.StreamLive, MaxLen: 100, TTL: 300 * time.Millisecond, Frames: frames})
	}
	page, err := s.ReadStream(e.ctx, id, c.Handle.AttemptIndex, "", sdk.MaxStreamRead)
	e.must("ReadStream", err)
	// MAXLEN ~ trims whole nodes: about 100, well under the 1000 sent.
	if n := len(page.Entries); n < 100 || n > 400 || string(page.Entries[n-1].Payload) != "999" {
		e.t.Fatalf("live stream kept %d frames (last %q), want about 100 ending with 999", n, page.Entries[n-1].Payload)
	}
	e.eventually("the live stream's expiry", func() (bool, string) {
		page, err := s.ReadStream(e.ctx, id, c.Handle.AttemptIndex, "", 0)
		e.must("ReadStream", err)
		return len(page.Entries) == 0, fmt.Sprintf("%d entries", len(page.Entries))
	})
}

// testAwaitTerminal: AwaitTerminal and AwaitResult return the terminal
// state once the execution ends (completed, or cancelled), and not before;
// AwaitResult with a completed execution's result (woken by the end, or
// called after it), none for another end.
func testAwaitTerminal(e *env) {
	const lane sdk.LaneID = "sdktest-await"
	tw := need(e, e.roles.TerminalWatcher, sdk.RoleTerminalWatch)
	id, c := e.claimed(lane)
	other := e.create(simple(lane))
	type result struct {
		s   sdk.PublicState
		res []byte
		err error
	}
	wait := func(id sdk.ExecutionID, withResult bool) chan result {
		ch := make(chan result, 1)
		go func() {
			var r result
			if withResult {
				r.s, r.res, r.err = tw.AwaitResult(e.ctx, id)
			} else {
				r.s, r.err = tw.AwaitTerminal(e.ctx, id)
			}
			ch <- r
		}()
		return ch
	}
	done, cancelled := wait(id, false), wait(other, false)
	doneRes, cancelledRes := wait(id, true), wait(other, true)
	e.sleep(100 * time.Millisecond)
	for _, ch := range []chan result{done, doneRes} {
		select {
		case r := <-ch:
			e.t.Fatalf("AwaitTerminal / AwaitResult of an active execution returned %+v", r)
		default:
		}
	}
	e.must("Complete", e.b.Complete(e.ctx, c.Handle, []byte("the result")))
	_, err := e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: other, Reason: "r"})
	e.must("CancelExecution", err)
	for _, w := range []struct {
		what string
		ch   chan result
		want sdk.PublicState
		res  string
	}{{"AwaitTerminal", done, sdk.StateCompleted, ""}, {"AwaitTerminal", cancelled, sdk.StateCancelled, ""},
		{"AwaitResult", doneRes, sdk.StateCompleted, "the result"}, {"AwaitResult", cancelledRes, sdk.StateCancelled, ""}} {
		select {
		case r := <-w.ch:
			if r.err != nil || r.s != w.want || string(r.res) != w.res {
				e.t.Fatalf("%s = %s, %q, %v; want %s, %q", w.what, r.s, r.res, r.err, w.want, w.res)
			}
		case <-time.After(settleDeadline):
			e.t.Fatalf("%s did not return within %v of the %s", w.what, settleDeadline, w.want)
		}
	}
	if s, res, err := tw.AwaitResult(e.ctx, id); err != nil || s != sdk.StateCompleted || string(res) != "the result" {
		e.t.Fatalf("AwaitResult of a completed execution = %s, %q, %v", s, res, err)
	}
	unknown := sdk.NewExecutionID(e.partition(id))
	if _, err := tw.AwaitTerminal(e.ctx, unknown); !errorIs(err, sdk.ErrExecutionNotFound) {
		e.t.Fatalf("AwaitTerminal of an unknown id = %v", err)
	}
	if _, _, err := tw.AwaitResult(e.ctx, unknown); !errorIs(err, sdk.ErrExecutionNotFound) {
		e.t.Fatalf("AwaitResult of an unknown id = %v", err)
	}
}

func errorIs(err, target error) bool { return err != nil && errors.Is(err, target) }

// testCompletions: a subscription from now gets every execution that ends
// (completed, failed, cancelled), in order, with its lane and state; one
// resumed from a completion's cursor gets what followed, once; filters by
// lane and by tag hold.
func testCompletions(e *env) {
	const lane, other sdk.LaneID = "sdktest-done", "sdktest-done-other"
	cs := need(e, e.roles.Completions, sdk.RoleCompletions)
	e.create(simple(lane)) // lanes registered before the subscription
	e.create(simple(other))
	type sub struct {
		ch     chan sdk.Completion
		cancel func()
	}
	subscribe := func(filter sdk.CompletionFilter, cursor string) sub {
		ctx, cancel := context.WithCancel(e.ctx)
		ch := make(chan sdk.Completion, 64)
		go func() {
			if err := cs.SubscribeCompletions(ctx, filter, cursor, func(c sdk.Completion) error {
				ch <- c
				return nil
			}); err != nil && ctx.Err() == nil {
				e.t.Errorf("SubscribeCompletions = %v", err)
			}
		}()
		return sub{ch, cancel}
	}
	next := func(s sub, what string) sdk.Completion {
		e.t.Helper()
		select {
		case c := <-s.ch:
			return c
		case <-time.After(settleDeadline):
			e.t.Fatalf("%s: no completion within %v", what, settleDeadline)
		}
		return sdk.Completion{}
	}
	all := subscribe(sdk.CompletionFilter{}, "")
	defer all.cancel()
	tagged := subscribe(sdk.CompletionFilter{Lanes: []sdk.LaneID{lane}, Tags: map[string]string{"team": "a"}}, "")
	defer tagged.cancel()
	e.sleep(200 * time.Millisecond) // the subscriptions read the indexes' ends

	withTag := simple(lane)
	withTag.Tags = map[string]string{"team": "a"}
	id1 := e.create(withTag)
	c1 := e.claim(id1, lane, leaseTTL)
	e.must("Complete", e.b.Complete(e.ctx, c1.Handle, nil))
	id2, c2 := e.claimed(other)
	_, _, _ = e.fail(c2.Handle, "boom", "x")
	id3 := e.create(simple(lane))
	_, err := e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: id3, Reason: "r"})
	e.must("CancelExecution", err)
	want := []struct {
		id    sdk.ExecutionID
		lane  sdk.LaneID
		state sdk.PublicState
	}{{id1, lane, sdk.StateCompleted}, {id2, other, sdk.StateFailed}, {id3, lane, sdk.StateCancelled}}
	var got []sdk.Completion
	for _, w := range want {
		c := next(all, "all")
		got = append(got, c)
		if c.ExecutionID != w.id || c.Lane != w.lane || c.State != w.state || c.At.IsZero() || c.Cursor == "" {
			e.t.Fatalf("completion %+v, want %s on %s %s", c, w.id, w.lane, w.state)
		}
	}
	if c := next(tagged, "the lane and tag filter"); c.ExecutionID != id1 {
		e.t.Fatalf("filtered subscription got %s, want only %s", c.ExecutionID, id1)
	}
	select {
	case c := <-tagged.ch:
		e.t.Fatalf("filtered subscription also got %s (%s on %s)", c.ExecutionID, c.State, c.Lane)
	case <-time.After(200 * time.Millisecond):
	}
	// Resumed after the first: the other two, once. A resumed read orders
	// by end time, then id: two ends in the same millisecond on different
	// partitions come in id order, not necessarily as they happened.
	resumed := subscribe(sdk.CompletionFilter{}, got[0].Cursor)
	defer resumed.cancel()
	rest := map[sdk.ExecutionID]bool{want[1].id: true, want[2].id: true}
	for range want[1:] {
		c := next(resumed, "resumed")
		if !rest[c.ExecutionID] {
			e.t.Fatalf("resumed subscription: %s, want one of %v", c.ExecutionID, rest)
		}
		delete(rest, c.ExecutionID)
	}
	select {
	case c := <-resumed.ch:
		e.t.Fatalf("resumed subscription delivered %s again", c.ExecutionID)
	case <-time.After(200 * time.Millisecond):
	}
	e.rejects("SubscribeCompletions with a malformed cursor", func() error {
		return cs.SubscribeCompletions(e.ctx, sdk.CompletionFilter{}, "%%%", func(sdk.Completion) error { return nil })
	}, sdk.ErrValidation)
}
