package sdktest

import (
	"context"
	"strconv"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// testLeaseHistory: an execution created with lease history logs each
// lease event (acquired, renewed late, released, revoked, reclaimed) with
// its lease id and epoch, in order; one created without logs nothing; lane
// and tag filters hold; a subscription resumed from an event's cursor gets
// what followed, once; a malformed cursor is refused.
func testLeaseHistory(e *env) {
	const lane, other sdk.LaneID = "sdktest-leases", "sdktest-leases-other"
	lh := need(e, e.roles.LeaseHistory, sdk.RoleLeaseHistory)
	type sub struct {
		ch     chan sdk.LeaseEvent
		cancel func()
	}
	subscribe := func(filter sdk.LeaseHistoryFilter, cursor string) sub {
		ctx, cancel := context.WithCancel(e.ctx)
		ch := make(chan sdk.LeaseEvent, 64)
		go func() {
			if err := lh.SubscribeLeaseHistory(ctx, filter, cursor, func(ev sdk.LeaseEvent) error {
				ch <- ev
				return nil
			}); err != nil && ctx.Err() == nil {
				e.t.Errorf("SubscribeLeaseHistory = %v", err)
			}
		}()
		return sub{ch, cancel}
	}
	next := func(s sub, what string) sdk.LeaseEvent {
		e.t.Helper()
		select {
		case ev := <-s.ch:
			return ev
		case <-time.After(settleDeadline):
			e.t.Fatalf("%s: no lease event within %v", what, settleDeadline)
		}
		return sdk.LeaseEvent{}
	}
	quiet := func(s sub, what string) {
		e.t.Helper()
		select {
		case ev := <-s.ch:
			e.t.Fatalf("%s got %s %s of %s", what, ev.Kind, ev.Reason, ev.ExecutionID)
		case <-time.After(200 * time.Millisecond):
		}
	}
	all := subscribe(sdk.LeaseHistoryFilter{}, "")
	defer all.cancel()
	onOther := subscribe(sdk.LeaseHistoryFilter{Lanes: []sdk.LaneID{other}}, "")
	defer onOther.cancel()
	tagged := subscribe(sdk.LeaseHistoryFilter{Tags: map[string]string{"team": "a"}}, "")
	defer tagged.cancel()
	e.sleep(200 * time.Millisecond) // the subscriptions read the streams' ends

	logged := simple(lane)
	logged.LeaseHistory = true
	withTag := logged
	withTag.Tags = map[string]string{"team": "a"}
	id1 := e.create(withTag)
	const ttl = time.Second
	c1 := e.claim(id1, lane, ttl)
	// A renewal with less than a quarter of the TTL left is a late one.
	e.sleepUntil(c1.ExpiresAt.Add(-150 * time.Millisecond))
	_, err := e.b.Renew(e.ctx, c1.Handle)
	e.must("Renew", err)
	e.must("Complete", e.b.Complete(e.ctx, c1.Handle, nil))

	idPlain := e.create(simple(lane)) // no lease history: nothing logged
	cp := e.claim(idPlain, lane, leaseTTL)
	e.must("Complete without lease history", e.b.Complete(e.ctx, cp.Handle, nil))

	id2 := e.create(logged)
	c2 := e.claim(id2, lane, leaseTTL)
	e.revoke(c2.Handle)
	r := e.reclaim(c2.Handle, 0, contextOf(logged))
	_, err = e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: id2, Reason: "r"})
	e.must("CancelExecution", err)

	want := []struct {
		id     sdk.ExecutionID
		kind   sdk.LeaseEventKind
		h      sdk.Handle
		reason string // "" matches any
		holder bool   // WorkerInstance is set
	}{
		{id1, sdk.LeaseAcquired, c1.Handle, "", true},
		{id1, sdk.LeaseRenewedLate, c1.Handle, "", false},
		{id1, sdk.LeaseReleased, c1.Handle, "completed", false},
		{id2, sdk.LeaseAcquired, c2.Handle, "", true},
		{id2, sdk.LeaseRevoked, c2.Handle, "sdktest", false},
		{id2, sdk.LeaseReclaimed, r.Handle, "", true},
		{id2, sdk.LeaseReleased, r.Handle, "cancelled", false},
	}
	var got []sdk.LeaseEvent
	for i, w := range want {
		ev := next(all, "all")
		got = append(got, ev)
		if ev.ExecutionID != w.id || ev.Kind != w.kind || ev.LeaseID != w.h.LeaseID || ev.Epoch != w.h.Epoch ||
			ev.Lane != lane || ev.At.IsZero() || ev.Cursor == "" || (w.reason != "" && ev.Reason != w.reason) ||
			(w.holder && ev.WorkerInstance != workerInstance) || (!w.holder && ev.WorkerInstance != "") {
			e.t.Fatalf("lease event %d: %+v, want %s of %s (lease %s epoch %d, reason %q)", i, ev, w.kind, w.id,
				w.h.LeaseID, w.h.Epoch, w.reason)
		}
	}
	if left, err := strconv.Atoi(got[1].Reason); err != nil || left < 0 || left*4 >= int(ttl.Milliseconds()) {
		e.t.Fatalf("renewed_late reason %q, want the milliseconds left, under a quarter of %v", got[1].Reason, ttl)
	}
	quiet(all, "the subscription after the last event")
	for i := range 3 {
		if ev := next(tagged, "the tag filter"); ev.ExecutionID != id1 || ev.Kind != want[i].kind {
			e.t.Fatalf("tag filter: %s of %s, want %s of %s", ev.Kind, ev.ExecutionID, want[i].kind, id1)
		}
	}
	quiet(tagged, "the tag filter")
	quiet(onOther, "a subscription to another lane")

	// Resumed after the third event: the other four, once.
	resumed := subscribe(sdk.LeaseHistoryFilter{}, got[2].Cursor)
	defer resumed.cancel()
	for _, w := range want[3:] {
		if ev := next(resumed, "resumed"); ev.ExecutionID != w.id || ev.Kind != w.kind {
			e.t.Fatalf("resumed subscription: %s of %s, want %s of %s", ev.Kind, ev.ExecutionID, w.kind, w.id)
		}
	}
	quiet(resumed, "the resumed subscription")
	for _, bad := range []string{"%%%", "1-0,,", "x-y"} {
		e.rejects("SubscribeLeaseHistory with cursor "+bad, func() error {
			return lh.SubscribeLeaseHistory(e.ctx, sdk.LeaseHistoryFilter{}, bad, func(sdk.LeaseEvent) error { return nil })
		}, sdk.ErrValidation)
	}
	e.rejects("SubscribeLeaseHistory with a bad lane", func() error {
		return lh.SubscribeLeaseHistory(e.ctx, sdk.LeaseHistoryFilter{Lanes: []sdk.LaneID{"bad lane"}}, "",
			func(sdk.LeaseEvent) error { return nil })
	}, sdk.ErrValidation)
}
