package valkeybackend_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// Promises of the README's "Streaming output and learning that work ended"
// and of the doc comments of sdk.Streamer, sdk.TerminalWatcher,
// sdk.CompletionSubscriber, Client.Wait / WaitResult / Tail, checked
// against a real server through the public API.

// spClaimed creates an execution on lane and claims it.
func spClaimed(t *testing.T, ctx context.Context, b *valkeybackend.Backend, args sdk.CreateExecutionArgs, ttl time.Duration) (sdk.ExecutionID, sdk.Handle) {
	t.Helper()
	if args.Kind == "" {
		args.Kind = "k"
	}
	r, err := b.CreateExecution(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: args.Lane, WorkerID: "w", WorkerInstanceID: "w-1"}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return r.ID, c.Handle
}

func spFrames(prefix string, n int) []sdk.Frame {
	out := make([]sdk.Frame, n)
	for i := range out {
		out[i] = sdk.Frame{Type: "t", Payload: []byte(prefix + strconv.Itoa(i))}
	}
	return out
}

// spReadAll pages through a stream with the largest reads.
func spReadAll(t *testing.T, ctx context.Context, b *valkeybackend.Backend, id sdk.ExecutionID, attempt sdk.AttemptIndex) []sdk.StreamEntry {
	t.Helper()
	var all []sdk.StreamEntry
	cursor := ""
	for {
		p, err := b.ReadStream(ctx, id, attempt, cursor, sdk.MaxStreamRead)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) == 0 {
			return all
		}
		all = append(all, p.Entries...)
		cursor = p.Entries[len(p.Entries)-1].ID
	}
}

func spKeyspaceSame(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if !maps.Equal(before, after) {
		var diff []string
		for k, v := range after {
			if before[k] != v {
				diff = append(diff, k)
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				diff = append(diff, "-"+k)
			}
		}
		t.Fatalf("%s wrote to the keyspace: %v", what, diff)
	}
}

// TestStreamPromiseBadInputTypedAndWritesNothing: every limit of
// sdk.AppendArgs (MaxFrameBytes, MaxFramesPerAppend, names, modes,
// MaxSummaryBytes, summary an object) and of the reads is refused with a
// typed error, without a panic, and with nothing written; the limits
// themselves are accepted; a summary_conflict writes nothing.
func TestStreamPromiseBadInputTypedAndWritesNothing(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const lane sdk.LaneID = "sp-bad"
	id, h := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, time.Minute)
	one := []sdk.Frame{{Type: "t", Payload: []byte("x")}}
	// A first append, so the execution is marked and the stream exists.
	if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Frames: one}); err != nil {
		t.Fatal(err)
	}
	badID := h
	badID.ExecutionID = "not-an-id"
	noTag := h
	noTag.ExecutionID = sdk.ExecutionID(strings.TrimPrefix(string(h.ExecutionID), "{"))
	validation := func(err error) bool { return sdk.KindOf(err) == sdk.KindValidation }
	code := func(c string) func(error) bool { return func(err error) bool { return sdk.CodeOf(err) == c } }
	cases := []struct {
		what string
		h    sdk.Handle
		args sdk.AppendArgs
		want func(error) bool
	}{
		{"no frames", h, sdk.AppendArgs{}, validation},
		{"257 frames", h, sdk.AppendArgs{Frames: spFrames("f", sdk.MaxFramesPerAppend+1)}, validation},
		{"a payload one byte over", h, sdk.AppendArgs{Frames: []sdk.Frame{{Type: "t", Payload: make([]byte, sdk.MaxFrameBytes+1)}}}, code(sdk.CodePayloadTooLarge)},
		{"an empty frame type", h, sdk.AppendArgs{Frames: []sdk.Frame{{Payload: []byte("x")}}}, validation},
		{"a frame type with a brace", h, sdk.AppendArgs{Frames: []sdk.Frame{{Type: "a{b"}}}, validation},
		{"a correlation id with a comma", h, sdk.AppendArgs{Frames: []sdk.Frame{{Type: "t", CorrelationID: "a,b"}}}, validation},
		{"an unknown mode", h, sdk.AppendArgs{Mode: "forever", Frames: one}, validation},
		{"a negative MaxLen", h, sdk.AppendArgs{MaxLen: -1, Frames: one}, validation},
		{"a negative TTL", h, sdk.AppendArgs{Mode: sdk.StreamLive, TTL: -time.Second, Frames: one}, validation},
		{"a summary that is not an object", h, sdk.AppendArgs{Mode: sdk.StreamSummary, Summary: []byte(`[1]`), Frames: one}, code(sdk.CodeInvalidSummaryPatch)},
		{"a summary that is not JSON", h, sdk.AppendArgs{Mode: sdk.StreamSummary, Summary: []byte(`{`), Frames: one}, code(sdk.CodeInvalidSummaryPatch)},
		{"a summary over MaxSummaryBytes", h, sdk.AppendArgs{Mode: sdk.StreamSummary,
			Summary: []byte(`{"a":"` + strings.Repeat("x", sdk.MaxSummaryBytes) + `"}`), Frames: one}, code(sdk.CodePayloadTooLarge)},
		{"a summary onto a stale version", h, sdk.AppendArgs{Mode: sdk.StreamSummary, Summary: []byte(`{}`), SummaryVersion: 7, Frames: one},
			code(sdk.CodeSummaryConflict)},
		{"a malformed execution id", badID, sdk.AppendArgs{Frames: one}, func(err error) bool { return err != nil }},
		{"an execution id without its tag", noTag, sdk.AppendArgs{Frames: one}, func(err error) bool { return err != nil }},
		{"a zero handle", sdk.Handle{}, sdk.AppendArgs{Frames: one}, func(err error) bool { return err != nil }},
	}
	before := keyspace(t, addrs)
	for _, c := range cases {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("AppendFrames with %s panicked: %v", c.what, r)
				}
			}()
			_, err := b.AppendFrames(ctx, c.h, c.args)
			if err == nil || !c.want(err) {
				t.Fatalf("AppendFrames with %s = %v (kind %v, code %q)", c.what, err, sdk.KindOf(err), sdk.CodeOf(err))
			}
		}()
	}
	// Reads with bad arguments: typed errors, no panic.
	reads := []struct {
		what string
		call func() error
	}{
		{"ReadStream with a negative count", func() error { _, err := b.ReadStream(ctx, id, 0, "", -1); return err }},
		{"ReadStream with a malformed cursor", func() error { _, err := b.ReadStream(ctx, id, 0, "1-2-3", 0); return err }},
		{"ReadStream with a cursor too long", func() error {
			_, err := b.ReadStream(ctx, id, 0, strings.Repeat("1", 30)+"-"+strings.Repeat("1", 20), 0)
			return err
		}},
		{"ReadStream of a malformed id", func() error { _, err := b.ReadStream(ctx, "nope", 0, "", 0); return err }},
		{"TailStream with a negative block", func() error { _, err := b.TailStream(ctx, id, 0, "", -time.Second, 0); return err }},
		{"TailStream with a negative count", func() error { _, err := b.TailStream(ctx, id, 0, "", 0, -1); return err }},
		{"TailStream with a malformed cursor", func() error { _, err := b.TailStream(ctx, id, 0, "abc", 0, 0); return err }},
		{"ReadSummary of a malformed id", func() error { _, err := b.ReadSummary(ctx, "nope", 0); return err }},
	}
	for _, r := range reads {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("%s panicked: %v", r.what, p)
				}
			}()
			if err := r.call(); sdk.KindOf(err) != sdk.KindValidation {
				t.Fatalf("%s = %v, want a validation error", r.what, err)
			}
		}()
	}
	spKeyspaceSame(t, "refused appends and reads", before, keyspace(t, addrs))
	if _, err := b.ReadStream(ctx, sdk.NewExecutionID(0), 0, "", 0); !errors.Is(err, sdk.ErrExecutionNotFound) {
		t.Fatalf("ReadStream of an unknown execution = %v, want execution_not_found", err)
	}

	// The limits themselves pass: a payload of exactly MaxFrameBytes, and
	// MaxFramesPerAppend frames in one append, in order.
	if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Frames: []sdk.Frame{{Type: "big", Payload: make([]byte, sdk.MaxFrameBytes)}}}); err != nil {
		t.Fatalf("a payload of MaxFrameBytes: %v", err)
	}
	r, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Frames: spFrames("f", sdk.MaxFramesPerAppend)})
	if err != nil || len(r.EntryIDs) != sdk.MaxFramesPerAppend {
		t.Fatalf("MaxFramesPerAppend frames: %d ids, %v", len(r.EntryIDs), err)
	}
	all := spReadAll(t, ctx, b, id, h.AttemptIndex)
	if len(all) != 2+sdk.MaxFramesPerAppend || len(all[1].Payload) != sdk.MaxFrameBytes {
		t.Fatalf("stream holds %d entries, want %d", len(all), 2+sdk.MaxFramesPerAppend)
	}
	for i, e := range all[2:] {
		if string(e.Payload) != "f"+strconv.Itoa(i) || e.ID != r.EntryIDs[i] {
			t.Fatalf("entry %d = %s %q, want f%d as %s", i, e.ID, e.Payload, i, r.EntryIDs[i])
		}
	}
}

// TestStreamPromiseReadLimitAndPaging: a read returns at most
// MaxStreamRead entries whatever count asks, 100 by default; paging with
// each entry's ID as the cursor reads every frame once, in append order.
func TestStreamPromiseReadLimitAndPaging(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, h := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: "sp-read"}, time.Minute)
	const appends = 40 // 10,240 frames
	spAppendNumbered(t, ctx, b, h, appends, 20000)
	p, err := b.ReadStream(ctx, id, h.AttemptIndex, "", 0)
	if err != nil || len(p.Entries) != 100 {
		t.Fatalf("ReadStream count 0 = %d entries, %v; want 100", len(p.Entries), err)
	}
	p, err = b.ReadStream(ctx, id, h.AttemptIndex, "", 50000)
	if err != nil || len(p.Entries) != sdk.MaxStreamRead {
		t.Fatalf("ReadStream count 50000 = %d entries, %v; want MaxStreamRead", len(p.Entries), err)
	}
	es, err := b.TailStream(ctx, id, h.AttemptIndex, "", time.Second, 50000)
	if err != nil || len(es) != sdk.MaxStreamRead {
		t.Fatalf("TailStream count 50000 = %d entries, %v; want MaxStreamRead", len(es), err)
	}
	all := spReadAll(t, ctx, b, id, h.AttemptIndex)
	if len(all) != appends*sdk.MaxFramesPerAppend {
		t.Fatalf("paged read: %d entries, want %d", len(all), appends*sdk.MaxFramesPerAppend)
	}
	for i, e := range all {
		if string(e.Payload) != strconv.Itoa(i) {
			t.Fatalf("entry %d holds %q", i, e.Payload)
		}
	}
}

// TestStreamPromiseDurableKeepsAboutTheLast10000: a durable stream with
// the default MaxLen keeps about the last StreamMaxLenDefault frames: never
// fewer, the newest among them, contiguous.
func TestStreamPromiseDurableKeepsAboutTheLast10000(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, h := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: "sp-trim"}, time.Minute)
	const appends = 50 // 12,800 frames
	spAppendNumbered(t, ctx, b, h, appends, 0)
	all := spReadAll(t, ctx, b, id, h.AttemptIndex)
	total := appends * sdk.MaxFramesPerAppend
	if len(all) < sdk.StreamMaxLenDefault || len(all) > sdk.StreamMaxLenDefault+sdk.MaxFramesPerAppend+200 {
		t.Fatalf("durable stream kept %d of %d frames, want about %d", len(all), total, sdk.StreamMaxLenDefault)
	}
	first := total - len(all)
	for i, e := range all {
		if string(e.Payload) != strconv.Itoa(first+i) {
			t.Fatalf("kept entry %d holds %q, want %d: not the newest, contiguous", i, e.Payload, first+i)
		}
	}
}

// TestStreamPromiseStaleHolderCannotAppend: once the lease is gone (expired,
// or its attempt ended and a later attempt holds the execution) the old
// holder's appends are refused with a fence error and write nothing, to the
// old attempt's stream or the new one's; the new holder appends to its own.
func TestStreamPromiseStaleHolderCannotAppend(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const lane sdk.LaneID = "sp-stale"
	one := []sdk.Frame{{Type: "t", Payload: []byte("late")}}
	fenced := func(err error) bool {
		return errors.Is(err, sdk.ErrStaleLease) || errors.Is(err, sdk.ErrLeaseExpired) ||
			errors.Is(err, sdk.ErrLeaseRevoked) || errors.Is(err, sdk.ErrExecutionNotActive)
	}

	// Expired lease.
	_, h := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, 300*time.Millisecond)
	if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Frames: one}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	before := keyspace(t, addrs)
	if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Frames: one}); !errors.Is(err, sdk.ErrLeaseExpired) {
		t.Fatalf("append with an expired lease = %v, want lease_expired", err)
	}
	spKeyspaceSame(t, "an append with an expired lease", before, keyspace(t, addrs))

	// The attempt fails with a retry at once; a second claim starts attempt 1.
	id, h0 := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane,
		Retry: sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{Initial: 0, ZeroDelay: true}}}, time.Minute)
	if _, err := b.AppendFrames(ctx, h0, sdk.AppendArgs{Frames: spFrames("a0-", 3)}); err != nil {
		t.Fatal(err)
	}
	out, err := b.Fail(ctx, h0, "boom", "x")
	if err != nil || !out.RetryScheduled {
		t.Fatalf("Fail = %+v, %v; want a retry", out, err)
	}
	c1, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: lane, WorkerID: "w2", WorkerInstanceID: "w2-1"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h1 := c1.Handle
	if h1.AttemptIndex != h0.AttemptIndex+1 {
		t.Fatalf("second claim: attempt %d after %d", h1.AttemptIndex, h0.AttemptIndex)
	}
	forged := h0
	forged.AttemptIndex = h1.AttemptIndex // the old lease aimed at the new attempt's stream
	before = keyspace(t, addrs)
	for _, s := range []struct {
		what string
		h    sdk.Handle
	}{{"the ended attempt's holder", h0}, {"the old lease on the new attempt", forged}} {
		if _, err := b.AppendFrames(ctx, s.h, sdk.AppendArgs{Frames: one}); !fenced(err) {
			t.Fatalf("append by %s = %v, want a fence error", s.what, err)
		}
	}
	spKeyspaceSame(t, "a stale holder's appends", before, keyspace(t, addrs))
	if _, err := b.AppendFrames(ctx, h1, sdk.AppendArgs{Frames: spFrames("a1-", 2)}); err != nil {
		t.Fatalf("the new holder's append: %v", err)
	}
	old := spReadAll(t, ctx, b, id, h0.AttemptIndex)
	cur := spReadAll(t, ctx, b, id, h1.AttemptIndex)
	if len(old) != 3 || string(old[2].Payload) != "a0-2" || len(cur) != 2 || string(cur[0].Payload) != "a1-0" {
		t.Fatalf("streams: attempt 0 %d entries, attempt 1 %d entries", len(old), len(cur))
	}
	p, err := b.ReadStream(ctx, id, h0.AttemptIndex, "", 0)
	if err != nil || !p.Closed || p.CloseReason != "retried" || p.ClosedAt.IsZero() {
		t.Fatalf("attempt 0's stream after attempt 1 started: %+v, %v; want closed, retried", p.StreamState, err)
	}
	if p, err := b.ReadStream(ctx, id, h1.AttemptIndex, "", 0); err != nil || p.Closed {
		t.Fatalf("the running attempt's stream: %+v, %v; want open", p.StreamState, err)
	}
}

// TestStreamPromiseClosedWhenAttemptEndsWithRetry: README "a stream closes
// when its attempt ends; ReadStream reports closed-at and the attempt's
// outcome" (CloseReason documents "retried"), and Client.Tail "ends when
// the stream is closed (the attempt ended) and read to its end". An
// attempt that failed with a retry pending has ended (its appends are
// refused) before the next attempt starts.
func TestStreamPromiseClosedWhenAttemptEndsWithRetry(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, h := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: "sp-retry",
		Retry: sdk.RetryPolicy{MaxRetries: 1, Backoff: sdk.Backoff{Kind: sdk.BackoffFixed, Initial: time.Minute}}}, time.Minute)
	if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Frames: spFrames("f", 2)}); err != nil {
		t.Fatal(err)
	}
	out, err := b.Fail(ctx, h, "boom", "x")
	if err != nil || !out.RetryScheduled {
		t.Fatalf("Fail = %+v, %v; want a retry in a minute", out, err)
	}
	if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Frames: spFrames("g", 1)}); err == nil {
		t.Fatal("an append after the attempt ended was accepted")
	}
	p, err := b.ReadStream(ctx, id, h.AttemptIndex, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Closed || p.CloseReason != "retried" || p.ClosedAt.IsZero() {
		t.Fatalf("ended attempt's stream: %+v; want closed, reason retried", p.StreamState)
	}
	tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
	defer tcancel()
	n := 0
	for _, err := range sdk.NewClient(b).Tail(tctx, id, h.AttemptIndex, "") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if tctx.Err() != nil || n != 2 {
		t.Fatalf("Tail of the ended attempt: %d frames, ended by itself %v", n, tctx.Err() == nil)
	}
}

// TestStreamPromiseReadAfterEnd: after the attempt ends completed, failed
// (no retry left) or cancelled, ReadStream returns every frame, closed,
// with the outcome and when; Client.Tail from the start yields them all,
// once, in order, and ends by itself.
func TestStreamPromiseReadAfterEnd(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := sdk.NewClient(b)
	for _, end := range []struct {
		want sdk.PublicState
		do   func(sdk.Handle) error
	}{
		{sdk.StateCompleted, func(h sdk.Handle) error { return b.Complete(ctx, h, []byte("r")) }},
		{sdk.StateFailed, func(h sdk.Handle) error { _, err := b.Fail(ctx, h, "boom", "x"); return err }},
		{sdk.StateCancelled, func(h sdk.Handle) error {
			_, err := b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: h.ExecutionID, Reason: "stop"})
			return err
		}},
	} {
		id, h := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: "sp-end"}, time.Minute)
		if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Frames: spFrames("f", 5)}); err != nil {
			t.Fatal(err)
		}
		if err := end.do(h); err != nil {
			t.Fatal(err)
		}
		p, err := b.ReadStream(ctx, id, h.AttemptIndex, "", 0)
		if err != nil || len(p.Entries) != 5 || !p.Closed || p.CloseReason != string(end.want) || p.ClosedAt.IsZero() {
			t.Fatalf("%s: ReadStream = %d entries, %+v, %v", end.want, len(p.Entries), p.StreamState, err)
		}
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		var got []string
		for e, err := range client.Tail(tctx, id, h.AttemptIndex, "") {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(e.Payload))
		}
		ended := tctx.Err() == nil
		tcancel()
		if !ended || fmt.Sprint(got) != "[f0 f1 f2 f3 f4]" {
			t.Fatalf("%s: Tail = %v, ended by itself %v", end.want, got, ended)
		}
		if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Frames: spFrames("x", 1)}); err == nil {
			t.Fatalf("%s: an append after the end was accepted", end.want)
		}
	}
}

// TestWaitResultPromiseOutcomes: WaitResult returns a completed execution's
// result (nil when it has none), an *ExecutionError with the state, reason
// and category for one that failed, was cancelled or expired, ctx's error
// when ctx ends first, and ErrExecutionNotFound for an unknown id; pushed
// (client-side caching on) and polled (caching off). Wait returns the
// final snapshot.
func TestWaitResultPromiseOutcomes(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	for _, mode := range []struct {
		name string
		opts valkeybackend.Options
	}{{"pushed", valkeybackend.Options{}}, {"polled", valkeybackend.Options{CacheSizeEachConn: -1}}} {
		t.Run(mode.name, func(t *testing.T) {
			b := freshBackend(t, addrs, mode.opts)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			client := sdk.NewClient(b)
			const lane sdk.LaneID = "sp-wait"
			type outcome struct {
				res []byte
				err error
			}
			wait := func(id sdk.ExecutionID) chan outcome {
				ch := make(chan outcome, 1)
				go func() {
					res, err := client.WaitResult(ctx, id, 10*time.Millisecond)
					ch <- outcome{res, err}
				}()
				return ch
			}
			get := func(ch chan outcome, what string) outcome {
				t.Helper()
				select {
				case o := <-ch:
					return o
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: WaitResult did not return", what)
				}
				return outcome{}
			}
			idC, hC := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, time.Minute)
			idN, hN := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, time.Minute)
			idF, hF := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, time.Minute)
			idX, _ := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, time.Minute)
			rE, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Deadline: time.Now().Add(150 * time.Millisecond)})
			if err != nil {
				t.Fatal(err)
			}
			chC, chN, chF, chX, chE := wait(idC), wait(idN), wait(idF), wait(idX), wait(rE.ID)
			time.Sleep(100 * time.Millisecond)
			if err := b.Complete(ctx, hC, []byte("the result")); err != nil {
				t.Fatal(err)
			}
			if err := b.Complete(ctx, hN, nil); err != nil {
				t.Fatal(err)
			}
			spEndOtherwise(t, ctx, b, hF, "it broke", idX, "no longer wanted", rE.ID, 200*time.Millisecond)
			if o := get(chC, "completed"); o.err != nil || string(o.res) != "the result" {
				t.Fatalf("completed: %q, %v", o.res, o.err)
			}
			if o := get(chN, "completed without a result"); o.err != nil || o.res != nil {
				t.Fatalf("completed without a result: %q, %v", o.res, o.err)
			}
			for _, w := range []struct {
				ch       chan outcome
				id       sdk.ExecutionID
				state    sdk.PublicState
				reason   string
				category string
			}{{chF, idF, sdk.StateFailed, "it broke", "flaky"}, {chX, idX, sdk.StateCancelled, "no longer wanted", ""},
				{chE, rE.ID, sdk.StateExpired, "", "deadline"}} {
				o := get(w.ch, string(w.state))
				var ee *sdk.ExecutionError
				if !errors.As(o.err, &ee) || o.res != nil {
					t.Fatalf("%s: WaitResult = %q, %v; want an *ExecutionError", w.state, o.res, o.err)
				}
				if ee.ID != w.id || ee.State != w.state || (w.reason != "" && ee.Reason != w.reason) || ee.Category != w.category {
					t.Fatalf("%s: %+v", w.state, *ee)
				}
			}
			s, err := client.Wait(ctx, idF, 10*time.Millisecond)
			if err != nil || s.State != sdk.StateFailed {
				t.Fatalf("Wait of a failed execution = %+v, %v", s, err)
			}
			// ctx's error when it ends first.
			idA, _ := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, time.Minute)
			short, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_, err = client.WaitResult(short, idA, 10*time.Millisecond)
			scancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WaitResult past its ctx's deadline = %v, want context.DeadlineExceeded", err)
			}
			gone, gcancel := context.WithCancel(ctx)
			gcancel()
			if _, err := client.Wait(gone, idA, 10*time.Millisecond); !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait with a cancelled ctx = %v, want context.Canceled", err)
			}
			unknownCtx, ucancel := context.WithTimeout(ctx, 5*time.Second)
			defer ucancel()
			if _, err := client.WaitResult(unknownCtx, sdk.NewExecutionID(0), 10*time.Millisecond); !errors.Is(err, sdk.ErrExecutionNotFound) {
				t.Fatalf("WaitResult of an unknown id = %v, want execution_not_found", err)
			}
		})
	}
}

// TestCompletionsPromiseExactlyOnceUnderLoad: SubscribeCompletions streams
// "every execution that ends" with "nothing missed or repeated"
// (sdk.CompletionSubscriber: "nothing missed, nothing twice"). Many
// executions end concurrently, many in the same millisecond of one
// partition, while a subscription from now reads: each is delivered
// exactly once, with its state; a subscription resumed from a mid-way
// cursor gets exactly those delivered after it.
func TestCompletionsPromiseExactlyOnceUnderLoad(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const lane sdk.LaneID = "sp-done"
	const n = 1500
	ids := make([]sdk.ExecutionID, n)
	hs := make([]sdk.Handle, n)
	for i := range n {
		ids[i], hs[i] = spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, time.Minute)
	}
	sub := connectOpts(t, valkeybackend.Options{Addrs: addrs}, 1)
	var mu sync.Mutex
	var got []sdk.Completion
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- sub.SubscribeCompletions(sctx, sdk.CompletionFilter{Lanes: []sdk.LaneID{lane}}, "", func(c sdk.Completion) error {
			mu.Lock()
			got = append(got, c)
			mu.Unlock()
			return nil
		})
	}()
	time.Sleep(300 * time.Millisecond) // the subscription from now stands
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < n; i += 8 {
				if err := b.Complete(ctx, hs[i], nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // anything delivered twice arrives
	stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	seen := map[sdk.ExecutionID]int{}
	for _, c := range got {
		seen[c.ExecutionID]++
		if c.State != sdk.StateCompleted || c.Lane != lane || c.Cursor == "" {
			t.Fatalf("completion %+v", c)
		}
	}
	missed, twice := 0, 0
	for _, id := range ids {
		switch seen[id] {
		case 0:
			missed++
		case 1:
		default:
			twice++
		}
	}
	if missed > 0 {
		at := map[int64]bool{}
		for _, c := range got {
			at[c.At.UnixMilli()] = true
		}
		sameMs := 0
		for _, id := range ids {
			if seen[id] == 0 {
				d, err := b.DescribeExecution(ctx, id)
				_ = err
				if at[d.CompletedAt.UnixMilli()] {
					sameMs++
				}
			}
		}
		t.Logf("DIAG: %d of %d missed ended in a millisecond a delivered completion has", sameMs, missed)
	}
	if missed > 0 || twice > 0 || len(got) != n {
		t.Fatalf("%d of %d completions delivered: %d missed, %d delivered more than once", len(got), n, missed, twice)
	}
	// Resumed from the 500th cursor: exactly the rest.
	rctx, rstop := context.WithTimeout(ctx, 10*time.Second)
	defer rstop()
	want := map[sdk.ExecutionID]bool{}
	for _, c := range got[500:] {
		want[c.ExecutionID] = true
	}
	rest := map[sdk.ExecutionID]int{}
	_ = sub.SubscribeCompletions(rctx, sdk.CompletionFilter{Lanes: []sdk.LaneID{lane}}, got[499].Cursor, func(c sdk.Completion) error {
		rest[c.ExecutionID]++
		if len(rest) == len(want) {
			return errors.New("all read")
		}
		return nil
	})
	for id, k := range rest {
		if !want[id] || k != 1 {
			t.Fatalf("resumed: %s delivered %d times, after the cursor %v", id, k, want[id])
		}
	}
	if len(rest) != len(want) {
		t.Fatalf("resumed: %d of %d", len(rest), len(want))
	}
}

// TestCompletionsPromiseStates: SubscribeCompletions streams every
// execution that ends, whatever the end (completed, failed, cancelled,
// expired), with its lane and state; a bad lane filter or cursor is a
// validation error.
func TestCompletionsPromiseStates(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const lane sdk.LaneID = "sp-states"
	if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
		t.Fatal(err) // registers the lane
	}
	for _, bad := range []struct {
		what   string
		filter sdk.CompletionFilter
		cursor string
	}{{"a malformed lane", sdk.CompletionFilter{Lanes: []sdk.LaneID{"a b"}}, ""}, {"a malformed cursor", sdk.CompletionFilter{}, "!!"},
		{"a cursor that is base64 but not JSON", sdk.CompletionFilter{}, "bm90IGpzb24"}} {
		called := false
		err := b.SubscribeCompletions(ctx, bad.filter, bad.cursor, func(sdk.Completion) error { called = true; return nil })
		if sdk.KindOf(err) != sdk.KindValidation || called {
			t.Fatalf("SubscribeCompletions with %s = %v (fn called %v)", bad.what, err, called)
		}
	}
	ch := make(chan sdk.Completion, 16)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = b.SubscribeCompletions(sctx, sdk.CompletionFilter{Lanes: []sdk.LaneID{lane}}, "", func(c sdk.Completion) error {
			ch <- c
			return nil
		})
	}()
	time.Sleep(300 * time.Millisecond)
	_, hC := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, time.Minute)
	_, hF := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, time.Minute)
	idX, _ := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: lane}, time.Minute)
	rE, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Deadline: time.Now().Add(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Complete(ctx, hC, nil); err != nil {
		t.Fatal(err)
	}
	spEndOtherwise(t, ctx, b, hF, "boom", idX, "r", rE.ID, 150*time.Millisecond)
	want := map[sdk.ExecutionID]sdk.PublicState{hC.ExecutionID: sdk.StateCompleted, hF.ExecutionID: sdk.StateFailed,
		idX: sdk.StateCancelled, rE.ID: sdk.StateExpired}
	for n := len(want); n > 0; n-- { // want shrinks as completions arrive
		select {
		case c := <-ch:
			if want[c.ExecutionID] != c.State || c.Lane != lane || c.At.IsZero() {
				t.Fatalf("completion %+v, want %s", c, want[c.ExecutionID])
			}
			delete(want, c.ExecutionID)
		case <-time.After(5 * time.Second):
			t.Fatalf("not delivered: %v", want)
		}
	}
	select {
	case c := <-ch:
		t.Fatalf("delivered again: %+v", c)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestCompletionsPromiseFlowMembers: sdk.Completion documents FlowID ("the
// execution's flow; \"\" outside flows") and State "completed, failed,
// cancelled, expired, skipped". A flow a -> b whose a fails: the
// subscription delivers a failed and b skipped, each with the flow's id.
func TestCompletionsPromiseFlowMembers(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const lane sdk.LaneID = "sp-flow"
	if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
		t.Fatal(err) // registers the lane
	}
	ch := make(chan sdk.Completion, 16)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = b.SubscribeCompletions(sctx, sdk.CompletionFilter{Lanes: []sdk.LaneID{lane}}, "", func(c sdk.Completion) error {
			ch <- c
			return nil
		})
	}()
	time.Sleep(300 * time.Millisecond)
	sub, err := b.SubmitFlow(ctx, sdk.FlowSpec{Members: []sdk.FlowMember{
		{Name: "a", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}},
		{Name: "b", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}}},
		Edges: []sdk.FlowEdge{{From: "a", To: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	a := sub.Members["a"]
	c, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: a, Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Fail(ctx, c.Handle, "boom", "x"); err != nil {
		t.Fatal(err)
	}
	want := map[sdk.ExecutionID]sdk.PublicState{a: sdk.StateFailed, sub.Members["b"]: sdk.StateSkipped}
	for n := len(want); n > 0; n-- { // want shrinks as completions arrive
		select {
		case c := <-ch:
			if want[c.ExecutionID] != c.State {
				t.Fatalf("completion %+v, want %s", c, want[c.ExecutionID])
			}
			if c.FlowID != sub.ID {
				t.Fatalf("completion of flow member %s (%s): FlowID %q, want %q", c.ExecutionID, c.State, c.FlowID, sub.ID)
			}
			delete(want, c.ExecutionID)
		case <-time.After(5 * time.Second):
			t.Fatalf("not delivered: %v", want)
		}
	}
}

// TestTailPromiseResumesAfterTransportError: Client.Tail "resumes from its
// cursor after a transport error": with its blocking connection killed
// again and again while frames are appended, it yields every frame once,
// in order, and ends when the attempt has ended.
func TestTailPromiseResumesAfterTransportError(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	tailer := connectOpts(t, valkeybackend.Options{Addrs: addrs}, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, h := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: "sp-tail"}, time.Minute)
	killer := nodeClients(t, addrs)[0]
	defer killer.Close()
	const rounds, per = 20, 50
	type out struct {
		got []string
		err error
	}
	done := make(chan out, 1)
	go func() {
		var o out
		for e, err := range sdk.NewClient(tailer).Tail(ctx, id, h.AttemptIndex, "") {
			if err != nil {
				o.err = err
				break
			}
			o.got = append(o.got, string(e.Payload))
		}
		done <- o
	}()
	killed := 0
	for r := range rounds {
		fs := spFrames("", per)
		for i := range fs {
			fs[i].Payload = []byte(strconv.Itoa(r*per + i))
		}
		if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Frames: fs}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		// Kill the connections blocked in XREAD: the tail's.
		list, err := killer.Do(ctx, killer.B().ClientList().Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(list, "\n") {
			if !strings.Contains(line, "cmd=xread") {
				continue
			}
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "id="); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					if err := killer.Do(ctx, killer.B().ClientKill().Id(n).Build()).Error(); err == nil {
						killed++
					}
				}
			}
		}
	}
	if err := b.Complete(ctx, h, nil); err != nil {
		t.Fatal(err)
	}
	var o out
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Tail did not end after the attempt ended")
	}
	if o.err != nil {
		t.Fatalf("Tail yielded %v", o.err)
	}
	if killed == 0 {
		t.Fatal("no tail connection was killed: the test proves nothing")
	}
	if len(o.got) != rounds*per {
		t.Fatalf("Tail yielded %d frames, want %d (killed %d times)", len(o.got), rounds*per, killed)
	}
	for i, p := range o.got {
		if p != strconv.Itoa(i) {
			t.Fatalf("frame %d = %q", i, p)
		}
	}
	t.Logf("tail connection killed %d times", killed)
}

// TestStreamPromiseLiveDefaults: a live stream without MaxLen or TTL keeps
// about the last LiveStreamMaxLenDefault frames (never fewer, the newest)
// and expires LiveStreamTTLDefault after its last append.
func TestStreamPromiseLiveDefaults(t *testing.T) {
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, h := spClaimed(t, ctx, b, sdk.CreateExecutionArgs{Lane: "sp-live"}, time.Minute)
	const appends = 6
	for a := range appends {
		fs := spFrames("", sdk.MaxFramesPerAppend)
		for i := range fs {
			fs[i].Payload = []byte(strconv.Itoa(a*sdk.MaxFramesPerAppend + i))
		}
		if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{Mode: sdk.StreamLive, Frames: fs}); err != nil {
			t.Fatal(err)
		}
	}
	all := spReadAll(t, ctx, b, id, h.AttemptIndex)
	total := appends * sdk.MaxFramesPerAppend
	if len(all) < sdk.LiveStreamMaxLenDefault || len(all) > sdk.LiveStreamMaxLenDefault+sdk.MaxFramesPerAppend+200 {
		t.Fatalf("live stream kept %d of %d frames, want about %d", len(all), total, sdk.LiveStreamMaxLenDefault)
	}
	if string(all[len(all)-1].Payload) != strconv.Itoa(total-1) {
		t.Fatalf("live stream's last entry %q", all[len(all)-1].Payload)
	}
	c := nodeClients(t, addrs)[0]
	defer c.Close()
	// README: streams are per attempt, ff:e:<id>:stream:<attempt>.
	key := "ff:e:" + string(id) + ":stream:" + strconv.Itoa(int(h.AttemptIndex))
	ttl, err := c.Do(ctx, c.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil || ttl <= 0 || time.Duration(ttl)*time.Millisecond > sdk.LiveStreamTTLDefault ||
		time.Duration(ttl)*time.Millisecond < sdk.LiveStreamTTLDefault-time.Minute {
		t.Fatalf("live stream's PTTL = %dms, %v; want about %v", ttl, err, sdk.LiveStreamTTLDefault)
	}
}

// spEndOtherwise ends three executions each its own way: the lease h
// fails (terminally, reason why), x is cancelled (reason), and after wait
// (past its deadline) expiring is expired by the deadline scan.
func spEndOtherwise(t *testing.T, ctx context.Context, b *valkeybackend.Backend, h sdk.Handle, why string,
	x sdk.ExecutionID, reason string, expiring sdk.ExecutionID, wait time.Duration) {
	t.Helper()
	if _, err := b.Fail(ctx, h, why, "flaky"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: x, Reason: reason}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(wait)
	if _, err := b.Expire(ctx, []sdk.ExecutionID{expiring}, valkeybackend.DueDeadlines); err != nil {
		t.Fatal(err)
	}
}

// spAppendNumbered appends appends full batches of frames to h's stream
// (MaxLen maxLen, 0: the default), frame i's payload its number i.
func spAppendNumbered(t *testing.T, ctx context.Context, b *valkeybackend.Backend, h sdk.Handle, appends, maxLen int) {
	t.Helper()
	for a := range appends {
		fs := spFrames("", sdk.MaxFramesPerAppend)
		for i := range fs {
			fs[i].Payload = []byte(strconv.Itoa(a*sdk.MaxFramesPerAppend + i))
		}
		if _, err := b.AppendFrames(ctx, h, sdk.AppendArgs{MaxLen: maxLen, Frames: fs}); err != nil {
			t.Fatal(err)
		}
	}
}
