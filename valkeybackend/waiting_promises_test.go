package valkeybackend_test

// Tests of the documented promises of durable waiting (README "Waiting for
// a signal: suspend and resume", the doc comments of sdk/waiting.go,
// sdk/task_waiting.go and Client.DeliverSignal) that the conformance suite
// (sdk/sdktest/waiting.go) leaves unchecked or checks on the happy path
// only. Each test names the promise it checks. They reuse the flows-promise
// fixture (fp, flows_promises_test.go): a fresh standalone backend.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

var (
	wpKID    = "wp-k1"
	wpSecret = []byte("waiting-promises-secret-0123456789")
)

// newWP is a flows-promise fixture with the waitpoint secret seeded.
func newWP(t *testing.T) *fp {
	t.Helper()
	f := newFP(t)
	f.lane = "wp-lane"
	if _, err := f.b.SeedWaitpointSecret(f.ctx, wpKID, wpSecret); err != nil {
		t.Fatalf("SeedWaitpointSecret: %v", err)
	}
	return f
}

// active creates an execution (on partition p when p >= 0) and claims it.
func (f *fp) active(p int) (sdk.ExecutionID, sdk.Handle) {
	f.t.Helper()
	args := sdk.CreateExecutionArgs{Lane: f.lane, Kind: "wp.job", Payload: []byte("{}")}
	if p >= 0 {
		args.ID = sdk.NewExecutionID(p)
	}
	r, err := f.b.CreateExecution(f.ctx, args)
	f.must("CreateExecution", err)
	return r.ID, f.claim(r.ID)
}

func (f *fp) suspend(h sdk.Handle, args sdk.SuspendArgs) sdk.SuspendOutcome {
	f.t.Helper()
	out, err := f.b.Suspend(f.ctx, h, args)
	f.must("Suspend", err)
	return out
}

func (f *fp) signal(token, name string, payload []byte) sdk.DeliverSignalResult {
	f.t.Helper()
	r, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: token, Name: name, Payload: payload, Source: "wp-test"})
	f.must("DeliverSignal "+name, err)
	return r
}

func (f *fp) observe(id sdk.ExecutionID) *sdk.Suspension {
	f.t.Helper()
	s, err := f.b.ObserveSignals(f.ctx, id)
	f.must("ObserveSignals", err)
	if s == nil {
		f.t.Fatalf("ObserveSignals(%s) = nil, want its suspension", id)
	}
	return s
}

// stillHeld fails unless h's lease is live (a refused call left it held).
func (f *fp) stillHeld(h sdk.Handle, what string) {
	f.t.Helper()
	if _, err := f.b.Renew(f.ctx, h); err != nil {
		f.t.Fatalf("%s: the lease is no longer held (Renew = %v)", what, err)
	}
}

// Promise (sdk/waiting.go "Waiting limits, checked before anything is
// written"; SuspendArgs.Resolve "the error is a validation error"; README
// Limits "16 waitpoints per suspension, 64 condition names, Count up to
// 1000"): every malformed suspend is a typed validation error
// (invalid_input), never a panic, writes nothing and leaves the lease held;
// the limits themselves are accepted.
func TestWaitPromiseSuspendBadInput(t *testing.T) {
	f := newWP(t)
	id, h := f.active(-1)
	labels := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("w%d", i)
		}
		return out
	}
	other := sdk.NewWaitpointID(sdk.NewExecutionID((partitionOf(t, id) + 1) % f.b.Partitions()))
	mine := sdk.NewWaitpointID(id)
	for _, c := range []struct {
		what string
		args sdk.SuspendArgs
	}{
		{"17 new waitpoints", sdk.SuspendArgs{Waitpoints: labels(17)}},
		{"16 new and 1 pending waitpoints", sdk.SuspendArgs{Waitpoints: labels(16), Pending: []sdk.WaitpointID{mine}}},
		{"65 condition names", sdk.SuspendArgs{Condition: sdk.ResumeCondition{Names: labels(65)}}},
		{"count 0", sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchCount}}},
		{"count 1001", sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 1001}}},
		{"mode all without names", sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchAll}}},
		{"an unknown mode", sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: "most"}}},
		{"an unknown timeout behaviour", sdk.SuspendArgs{Timeout: time.Minute, OnTimeout: "explode"}},
		{"a negative timeout", sdk.SuspendArgs{Timeout: -time.Second}},
		{"a label with a space", sdk.SuspendArgs{Waitpoints: []string{"bad label"}}},
		{"an empty label", sdk.SuspendArgs{Waitpoints: []string{""}}},
		{"a signal name with a comma", sdk.SuspendArgs{Condition: sdk.ResumeCondition{Names: []string{"a,b"}}}},
		{"a pending waitpoint given twice", sdk.SuspendArgs{Pending: []sdk.WaitpointID{mine, mine}}},
		{"a malformed pending waitpoint", sdk.SuspendArgs{Pending: []sdk.WaitpointID{"nope"}}},
		{"a pending waitpoint of another partition", sdk.SuspendArgs{Pending: []sdk.WaitpointID{other}}},
		{"a suspension id with a brace", sdk.SuspendArgs{SuspensionID: "{x}"}},
		{"a dedup key with a space", sdk.SuspendArgs{DedupKey: "a b"}},
		{"a reason of 1 MiB", sdk.SuspendArgs{Reason: strings.Repeat("r", 1<<20)}},
	} {
		f.refuses("Suspend with "+c.what, sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
			_, err := f.b.Suspend(f.ctx, h, c.args)
			return err
		})
		f.refuses("SuspendByTriple with "+c.what, sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
			_, err := f.b.SuspendByTriple(f.ctx, id, h.Fence(), c.args)
			return err
		})
	}
	f.refuses("Suspend with a zero handle", sdk.ErrValidation, "", func() error {
		_, err := f.b.Suspend(f.ctx, sdk.Handle{}, sdk.SuspendArgs{})
		return err
	})
	f.refuses("SuspendByTriple with a partial triple", sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
		_, err := f.b.SuspendByTriple(f.ctx, id, sdk.LeaseFence{LeaseID: h.LeaseID}, sdk.SuspendArgs{})
		return err
	})
	f.stillHeld(h, "after the refused suspends")
	f.requireState(id, sdk.StateActive, "after the refused suspends")

	// The limits themselves are accepted.
	for _, c := range []struct {
		what string
		args sdk.SuspendArgs
		want sdk.ResumeCondition
	}{
		{"16 waitpoints", sdk.SuspendArgs{Waitpoints: labels(16)}, sdk.ResumeCondition{Mode: sdk.MatchAny}},
		{"64 names, mode all", sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchAll, Names: labels(64)}},
			sdk.ResumeCondition{Mode: sdk.MatchAll, Names: labels(64)}},
		{"count 1000", sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 1000}},
			sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 1000}},
	} {
		id, h := f.active(-1)
		out := f.suspend(h, c.args)
		n := max(1, len(c.args.Waitpoints))
		if len(out.Waitpoints) != n {
			t.Fatalf("Suspend with %s: %d waitpoints, want %d", c.what, len(out.Waitpoints), n)
		}
		f.requireState(id, sdk.StateSuspended, "Suspend with "+c.what)
		s := f.observe(id)
		if s.Condition.Mode != c.want.Mode || s.Condition.Count != c.want.Count || len(s.Condition.Names) != len(c.want.Names) {
			t.Fatalf("Suspend with %s: condition recorded %+v, want %+v", c.what, s.Condition, c.want)
		}
	}
}

// Promise (DeliverSignalArgs, README Limits "64 KiB per signal payload",
// Client.DeliverSignal "A token that does not verify is invalid_token and
// nothing is written"): a payload over MaxSignalPayloadBytes is
// payload_too_large, a malformed name, source, dedup key, TTL or signal id
// is invalid_input, a token that is not one (or names a partition this
// deployment does not have) is invalid_token; none writes anything or
// counts towards the condition. A payload of exactly the limit is accepted
// and read back byte for byte.
func TestWaitPromiseDeliverSignalBadInput(t *testing.T) {
	f := newWP(t)
	id, h := f.active(-1)
	out := f.suspend(h, sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 2}})
	tok := out.Waitpoints[0].Token
	parts := strings.Split(tok, ".")
	farWP := sdk.WaitpointID(strings.Replace(string(out.Waitpoints[0].ID), fmt.Sprintf("{p:%d}", partitionOf(t, id)), "{p:9999}", 1))
	for _, c := range []struct {
		what string
		args sdk.DeliverSignalArgs
		want error
		code string
	}{
		{"a payload one byte over the limit", sdk.DeliverSignalArgs{Token: tok, Name: "x", Payload: make([]byte, sdk.MaxSignalPayloadBytes+1)},
			sdk.ErrPayloadTooLarge, sdk.CodePayloadTooLarge},
		{"an empty name", sdk.DeliverSignalArgs{Token: tok}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a name with a space", sdk.DeliverSignalArgs{Token: tok, Name: "a b"}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a dedup key with a brace", sdk.DeliverSignalArgs{Token: tok, Name: "x", DedupKey: "{k}"}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a negative dedup TTL", sdk.DeliverSignalArgs{Token: tok, Name: "x", DedupKey: "k", DedupTTL: -time.Second}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a signal id with a space", sdk.DeliverSignalArgs{Token: tok, Name: "x", SignalID: "a b"}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"a source of 1 MiB", sdk.DeliverSignalArgs{Token: tok, Name: "x", Source: strings.Repeat("s", 1<<20)}, sdk.ErrValidation, sdk.CodeInvalidInput},
		{"an empty token", sdk.DeliverSignalArgs{Name: "x"}, sdk.ErrValidation, sdk.CodeInvalidToken},
		{"a token of 300 bytes", sdk.DeliverSignalArgs{Token: tok + strings.Repeat("0", 300), Name: "x"}, sdk.ErrValidation, sdk.CodeInvalidToken},
		{"a token with an upper-case mac", sdk.DeliverSignalArgs{Token: parts[0] + "." + parts[1] + "." + strings.ToUpper(parts[2]), Name: "x"},
			sdk.ErrValidation, sdk.CodeInvalidToken},
		{"a token of a partition the deployment does not have", sdk.DeliverSignalArgs{Token: string(farWP) + "." + parts[1] + "." + parts[2], Name: "x"},
			sdk.ErrValidation, sdk.CodeInvalidToken},
		{"a token whose mac is one digit short", sdk.DeliverSignalArgs{Token: tok[:len(tok)-1], Name: "x"}, sdk.ErrValidation, sdk.CodeInvalidToken},
	} {
		f.refuses("DeliverSignal with "+c.what, c.want, c.code, func() error {
			_, err := f.b.DeliverSignal(f.ctx, c.args)
			return err
		})
	}
	if s := f.observe(id); !s.Open || len(s.Signals) != 0 {
		t.Fatalf("after refused signals: suspension %+v, want open with no signal", s)
	}
	big := bytes.Repeat([]byte{0, 0xff, 'x', '\n'}, sdk.MaxSignalPayloadBytes/4)
	if r := f.signal(tok, "big", big); r.Effect != sdk.EffectMatched {
		t.Fatalf("a payload of exactly %d bytes: effect %q, want matched", len(big), r.Effect)
	}
	if s := f.observe(id); len(s.Signals) != 1 || !bytes.Equal(s.Signals[0].Payload, big) || s.Signals[0].Source != "wp-test" {
		t.Fatalf("the signal at the payload limit was not kept as sent (%d signals)", len(s.Signals))
	}
}

// Promise (Waiter.CreateWaitpoint / Task.CreateWaitpoint "It expires
// unused after ttl (0: DefaultPendingWaitpointTTL)"): a zero ttl expires an
// hour on; a malformed label or a negative ttl is invalid_input and a
// stale handle a fence error, none writing anything.
func TestWaitPromiseCreateWaitpointDefaultsAndBadInput(t *testing.T) {
	f := newWP(t)
	_, h := f.active(-1)
	before := time.Now()
	pw, err := f.b.CreateWaitpoint(f.ctx, h, "", 0)
	f.must("CreateWaitpoint", err)
	lo, hi := before.Add(sdk.DefaultPendingWaitpointTTL-5*time.Second), time.Now().Add(sdk.DefaultPendingWaitpointTTL+5*time.Second)
	if pw.ExpiresAt.Before(lo) || pw.ExpiresAt.After(hi) {
		t.Fatalf("CreateWaitpoint with ttl 0 expires at %v, want about %v on", pw.ExpiresAt, sdk.DefaultPendingWaitpointTTL)
	}
	if pw.Label != "default" || pw.Token == "" {
		t.Fatalf("CreateWaitpoint = %+v", pw)
	}
	f.refuses("CreateWaitpoint with a label with a space", sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
		_, err := f.b.CreateWaitpoint(f.ctx, h, "bad label", time.Minute)
		return err
	})
	f.refuses("CreateWaitpoint with a negative ttl", sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
		_, err := f.b.CreateWaitpoint(f.ctx, h, "x", -time.Minute)
		return err
	})
	stale := h
	stale.Epoch++
	f.refuses("CreateWaitpoint with a stale epoch", sdk.ErrState, "", func() error {
		_, err := f.b.CreateWaitpoint(f.ctx, stale, "x", time.Minute)
		return err
	})
	f.stillHeld(h, "after the refused CreateWaitpoint calls")
}

// Promise (error codes waitpoint_not_found, waitpoint_not_pending;
// SuspendArgs.Pending "waitpoints the attempt created earlier"): a suspend
// naming another execution's pending waitpoint is waitpoint_not_found (kind
// not_found), one naming a waitpoint already activated is
// waitpoint_not_pending (kind state); neither writes anything and the lease
// stays held.
func TestWaitPromisePendingWaitpointErrors(t *testing.T) {
	f := newWP(t)
	id, h := f.active(2)
	_, h2 := f.active(2)
	theirs, err := f.b.CreateWaitpoint(f.ctx, h2, "theirs", time.Minute)
	f.must("CreateWaitpoint", err)
	f.refuses("Suspend on another execution's pending waitpoint", sdk.ErrNotFound, sdk.CodeWaitpointNotFound, func() error {
		_, err := f.b.Suspend(f.ctx, h, sdk.SuspendArgs{Pending: []sdk.WaitpointID{theirs.ID}})
		return err
	})
	f.refuses("Suspend on a pending waitpoint that was never created", sdk.ErrNotFound, sdk.CodeWaitpointNotFound, func() error {
		_, err := f.b.Suspend(f.ctx, h, sdk.SuspendArgs{Pending: []sdk.WaitpointID{sdk.NewWaitpointID(id)}})
		return err
	})
	f.stillHeld(h, "after the refused suspends")

	// Activated by an already satisfied suspend: naming it again is not_pending.
	mine, err := f.b.CreateWaitpoint(f.ctx, h, "mine", time.Minute)
	f.must("CreateWaitpoint", err)
	if r := f.signal(mine.Token, "early", nil); r.Effect != sdk.EffectBuffered {
		t.Fatalf("signal to a pending waitpoint: effect %q, want buffered", r.Effect)
	}
	if out := f.suspend(h, sdk.SuspendArgs{Pending: []sdk.WaitpointID{mine.ID}}); !out.AlreadySatisfied {
		t.Fatalf("Suspend on a buffered signal = %+v, want already satisfied", out)
	}
	f.refuses("Suspend on a waitpoint already activated", sdk.ErrState, sdk.CodeWaitpointNotPending, func() error {
		_, err := f.b.Suspend(f.ctx, h, sdk.SuspendArgs{Pending: []sdk.WaitpointID{mine.ID}})
		return err
	})
	f.stillHeld(h, "after the refused suspend")
	f.requireState(id, sdk.StateActive, "after the refused suspend")
}

// Promise (README: "When the signals meet the suspension's condition the
// execution resumes"; exactly once): signals racing on every waitpoint of
// a suspension resume it exactly once. Mode any: one signal is resumed,
// every other is waitpoint_closed (or counted before, never a second
// resume); count(3): one resumed, two matched. The suspension keeps
// exactly the signals that counted, and one attempt is resumed.
func TestWaitPromiseResumeExactlyOnce(t *testing.T) {
	f := newWP(t)
	for _, c := range []struct {
		cond    sdk.ResumeCondition
		matched int
	}{
		{sdk.ResumeCondition{}, 0},
		{sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 3}, 2},
	} {
		id, h := f.active(-1)
		out := f.suspend(h, sdk.SuspendArgs{Waitpoints: []string{"a", "b", "c", "d"}, Condition: c.cond})
		const senders = 24
		effects := make(chan string, senders)
		var wg sync.WaitGroup
		for i := range senders {
			tok := out.Waitpoints[i%len(out.Waitpoints)].Token
			wg.Go(func() {
				r, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: tok, Name: fmt.Sprintf("s%d", i)})
				switch {
				case err == nil:
					effects <- r.Effect
				case sdk.CodeOf(err) == sdk.CodeWaitpointClosed:
					effects <- "closed"
				default:
					effects <- "error: " + err.Error()
				}
			})
		}
		wg.Wait()
		close(effects)
		count := map[string]int{}
		for e := range effects {
			count[e]++
		}
		if count[sdk.EffectResumed] != 1 || count[sdk.EffectMatched] != c.matched || count["closed"] != senders-1-c.matched {
			t.Fatalf("%+v: %d racing signals had effects %v; want 1 resumed, %d matched, the rest waitpoint_closed",
				c.cond, senders, count, c.matched)
		}
		s := f.observe(id)
		if s.Open || s.CloseReason != "satisfied" || len(s.Signals) != 1+c.matched {
			t.Fatalf("%+v: suspension %+v, want closed satisfied with %d signals", c.cond, s, 1+c.matched)
		}
		r := f.claim(id)
		if r.AttemptIndex != h.AttemptIndex || r.AttemptID != h.AttemptID {
			t.Fatalf("resumed attempt %d %s, want %d %s", r.AttemptIndex, r.AttemptID, h.AttemptIndex, h.AttemptID)
		}
		f.must("Complete", f.b.Complete(f.ctx, r, nil))
		if n, err := f.b.ReadTotalAttemptCount(f.ctx, id); err != nil || n != 1 {
			t.Fatalf("attempts after the race: %d, %v; want 1", n, err)
		}
	}
}

// Promise (README Operators: a suspension's waitpoints close; "A satisfied
// condition takes no more"; Dedup "a signal with DedupKey delivered again
// returns Duplicate with the first signal's id"): once a signal on one
// waitpoint resumes the execution, a signal on another waitpoint of the
// same suspension is waitpoint_closed and writes nothing, while a repeat
// of the resuming signal's dedup key is still its Duplicate.
func TestWaitPromiseOtherWaitpointClosedAfterResume(t *testing.T) {
	f := newWP(t)
	id, h := f.active(-1)
	out := f.suspend(h, sdk.SuspendArgs{Waitpoints: []string{"a", "b"}})
	first, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: out.Waitpoints[0].Token, Name: "go", DedupKey: "once"})
	f.must("DeliverSignal", err)
	if first.Effect != sdk.EffectResumed || first.ExecutionID != id {
		t.Fatalf("DeliverSignal = %+v, want resumed %s", first, id)
	}
	f.refuses("a signal on the other waitpoint after the resume", sdk.ErrState, sdk.CodeWaitpointClosed, func() error {
		_, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: out.Waitpoints[1].Token, Name: "go"})
		return err
	})
	before := keyspace(t, f.addrs)
	dup, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: out.Waitpoints[0].Token, Name: "go", DedupKey: "once"})
	f.must("DeliverSignal repeated", err)
	if !dup.Duplicate || dup.SignalID != first.SignalID {
		t.Fatalf("repeated DeliverSignal = %+v, want the duplicate of %s", dup, first.SignalID)
	}
	requireUnchanged(t, "a repeated signal", before, keyspace(t, f.addrs))
	f.requireState(id, sdk.StateWaiting, "resumed once")
}

// Promise (DeliverSignalArgs.DedupKey "makes a repeated delivery return
// the first signal's id as Duplicate for DedupTTL (default
// DefaultSignalDedupTTL)"): within the TTL a repeat is a Duplicate that
// does not count; after it the same key is a new signal that counts.
func TestWaitPromiseSignalDedupTTL(t *testing.T) {
	f := newWP(t)
	id, h := f.active(-1)
	out := f.suspend(h, sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 2}})
	tok := out.Waitpoints[0].Token
	args := sdk.DeliverSignalArgs{Token: tok, Name: "n", DedupKey: "k", DedupTTL: 300 * time.Millisecond}
	one, err := f.b.DeliverSignal(f.ctx, args)
	f.must("DeliverSignal", err)
	if one.Effect != sdk.EffectMatched {
		t.Fatalf("first signal: %+v, want matched", one)
	}
	dup, err := f.b.DeliverSignal(f.ctx, args)
	f.must("DeliverSignal repeated", err)
	if !dup.Duplicate || dup.SignalID != one.SignalID {
		t.Fatalf("repeat within the TTL = %+v, want a duplicate of %s", dup, one.SignalID)
	}
	f.requireState(id, sdk.StateSuspended, "a duplicate does not count")
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := f.b.DeliverSignal(f.ctx, args)
		f.must("DeliverSignal after the TTL", err)
		if !r.Duplicate {
			if r.Effect != sdk.EffectResumed || r.SignalID == one.SignalID {
				t.Fatalf("the key after its TTL: %+v, want a new signal that resumes", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dedup key of TTL %v still deduplicates after 5s", args.DedupTTL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := f.observe(id); len(s.Signals) != 2 {
		t.Fatalf("signals counted: %d, want 2", len(s.Signals))
	}
	// The default TTL: a key without DedupTTL is kept about 24 hours.
	_, h = f.active(-1)
	out = f.suspend(h, sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 2}})
	if _, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: out.Waitpoints[0].Token, Name: "n", DedupKey: "default-ttl"}); err != nil {
		t.Fatal(err)
	}
	c := f.b.Client()
	keys, err := c.Do(f.ctx, c.B().Keys().Pattern("*"+string(out.Waitpoints[0].ID)+"*default-ttl*").Build()).AsStrSlice()
	f.must("KEYS", err)
	if len(keys) != 1 {
		t.Fatalf("dedup keys of the waitpoint: %q, want one", keys)
	}
	ttl, err := c.Do(f.ctx, c.B().Pttl().Key(keys[0]).Build()).AsInt64()
	f.must("PTTL", err)
	if d := time.Duration(ttl) * time.Millisecond; d < sdk.DefaultSignalDedupTTL-time.Minute || d > sdk.DefaultSignalDedupTTL {
		t.Fatalf("a dedup key without DedupTTL lives %v, want %v", d, sdk.DefaultSignalDedupTTL)
	}
}

// Promise (TimeoutBehavior: TimeoutFail "the execution fails (category
// suspension_timeout)", SuspendArgs.OnTimeout "defaults to TimeoutFail",
// Suspension.TimeoutAt, ListSuspended's TimeoutAt, ExpireDueSuspensions
// "returns how many ended each way (by state after ...)", and "up to
// limit"): a suspension with a timeout and no OnTimeout fails with
// failure category suspension_timeout once due; its timeout is listed;
// ExpireDueSuspensions counts by state after and handles no more than
// limit per call.
func TestWaitPromiseTimeoutDefaultsAndCounts(t *testing.T) {
	f := newWP(t)
	const p = 3
	var ids []sdk.ExecutionID
	before := time.Now()
	for range 3 {
		id, h := f.active(p)
		f.suspend(h, sdk.SuspendArgs{Timeout: 200 * time.Millisecond, Reason: "r"})
		ids = append(ids, id)
	}
	page, err := f.b.ListSuspended(f.ctx, p, "", 10)
	f.must("ListSuspended", err)
	if len(page.Entries) != 3 {
		t.Fatalf("ListSuspended = %+v, want 3", page.Entries)
	}
	for _, e := range page.Entries {
		if e.TimeoutAt.Before(before.Add(200*time.Millisecond-time.Second)) || e.TimeoutAt.After(time.Now().Add(200*time.Millisecond+time.Second)) {
			t.Fatalf("ListSuspended entry %+v: timeout not about 200ms after the suspend", e)
		}
	}
	if s := f.observe(ids[0]); s.OnTimeout != sdk.TimeoutFail || s.TimeoutAt.IsZero() {
		t.Fatalf("suspension %+v: want on_timeout fail (the default) and a timeout", s)
	}
	counts, err := f.b.ExpireDueSuspensions(f.ctx, p, 10)
	f.must("ExpireDueSuspensions", err)
	if counts["failed"] != 0 {
		t.Fatalf("ExpireDueSuspensions before the timeouts = %v", counts)
	}
	time.Sleep(300 * time.Millisecond)
	counts, err = f.b.ExpireDueSuspensions(f.ctx, p, 2)
	f.must("ExpireDueSuspensions", err)
	if counts["failed"] != 2 || len(counts) != 1 {
		t.Fatalf("ExpireDueSuspensions(limit 2) = %v, want {failed: 2}", counts)
	}
	counts, err = f.b.ExpireDueSuspensions(f.ctx, p, 2)
	f.must("ExpireDueSuspensions", err)
	if counts["failed"] != 1 || len(counts) != 1 {
		t.Fatalf("second ExpireDueSuspensions = %v, want {failed: 1}", counts)
	}
	for _, id := range ids {
		s, err := f.b.DescribeExecution(f.ctx, id)
		f.must("DescribeExecution", err)
		if s.State != sdk.StateFailed || s.FailureCategory != "suspension_timeout" {
			t.Fatalf("%s after its suspension timed out: state %s, category %q; want failed, suspension_timeout", id, s.State, s.FailureCategory)
		}
	}
	if counts, err := f.b.ExpireDueSuspensions(f.ctx, p, 10); err != nil || len(counts) != 0 {
		t.Fatalf("ExpireDueSuspensions with nothing due = %v, %v", counts, err)
	}
}

// Promise (TimeoutResume "the attempt resumes without the signals";
// README "resume (without the signals)"): a timeout with OnTimeout resume
// makes the execution waiting again and the claim continues the same
// attempt (AttemptResumed), with the condition unmet; the resumed attempt
// can complete.
func TestWaitPromiseTimeoutResume(t *testing.T) {
	f := newWP(t)
	id, h := f.active(-1)
	out := f.suspend(h, sdk.SuspendArgs{Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 2},
		Timeout: 100 * time.Millisecond, OnTimeout: sdk.TimeoutResume})
	f.signal(out.Waitpoints[0].Token, "one", nil)
	time.Sleep(200 * time.Millisecond)
	counts, err := f.b.ExpireDueSuspensions(f.ctx, partitionOf(t, id), 10)
	f.must("ExpireDueSuspensions", err)
	if counts["waiting"] != 1 {
		t.Fatalf("ExpireDueSuspensions = %v, want {waiting: 1}", counts)
	}
	task, err := f.b.GrantAndClaim(f.ctx, sdk.IssueClaimGrantArgs{ExecutionID: id, Lane: f.lane, WorkerID: "fp-worker",
		WorkerInstanceID: "fp-worker-1", GrantTTL: 5 * time.Second}, 30*time.Second)
	f.must("GrantAndClaim", err)
	if task.AttemptType != sdk.AttemptResumed || task.Handle.AttemptID != h.AttemptID {
		t.Fatalf("claim after a resume timeout: %s attempt %s, want resumed %s", task.AttemptType, task.Handle.AttemptID, h.AttemptID)
	}
	s := f.observe(id)
	if s.Open || s.CloseReason != "timeout" {
		t.Fatalf("suspension after a resume timeout = %+v", s)
	}
	f.must("Complete", f.b.Complete(f.ctx, task.Handle, []byte("late")))
}

// Promise (README Operators: "CancelExecution cancels a suspended
// execution (its waitpoints close: later signals get waitpoint_closed)";
// Suspension.CloseReason "cancelled"): every waitpoint of the cancelled
// suspension refuses signals and writes nothing; the suspension reads
// closed, cancelled.
func TestWaitPromiseCancelClosesEveryWaitpoint(t *testing.T) {
	f := newWP(t)
	id, h := f.active(-1)
	out := f.suspend(h, sdk.SuspendArgs{Waitpoints: []string{"a", "b", "c"}})
	_, err := f.b.CancelExecution(f.ctx, sdk.CancelExecutionArgs{ExecutionID: id, Reason: "stop"})
	f.must("CancelExecution", err)
	for _, wp := range out.Waitpoints {
		f.refuses("a signal on waitpoint "+wp.Label+" of a cancelled execution", sdk.ErrState, sdk.CodeWaitpointClosed, func() error {
			_, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: wp.Token, Name: "late"})
			return err
		})
	}
	if s := f.observe(id); s.Open || s.CloseReason != "cancelled" {
		t.Fatalf("suspension after CancelExecution = %+v, want closed, cancelled", s)
	}
	f.requireState(id, sdk.StateCancelled, "cancelled while suspended")
}

// Promise (Suspension.CloseReason "expired"; signals to an ended
// execution): an execution whose deadline passes while it is suspended
// expires, its suspension closes with reason expired and its waitpoint
// refuses signals (waitpoint_closed), writing nothing.
func TestWaitPromiseDeadlineWhileSuspended(t *testing.T) {
	f := newWP(t)
	r, err := f.b.CreateExecution(f.ctx, sdk.CreateExecutionArgs{Lane: f.lane, Kind: "wp.job", Deadline: time.Now().Add(300 * time.Millisecond)})
	f.must("CreateExecution", err)
	id := r.ID
	out := f.suspend(f.claim(id), sdk.SuspendArgs{})
	time.Sleep(400 * time.Millisecond)
	_, err = f.b.Expire(f.ctx, []sdk.ExecutionID{id}, valkeybackend.DueDeadlines)
	f.must("Expire", err)
	f.requireState(id, sdk.StateExpired, "deadline passed while suspended")
	if s := f.observe(id); s.Open || s.CloseReason != "expired" {
		t.Fatalf("suspension after the deadline = %+v, want closed, expired", s)
	}
	f.refuses("a signal to an expired execution", sdk.ErrState, sdk.CodeWaitpointClosed, func() error {
		_, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: out.Waitpoints[0].Token, Name: "late"})
		return err
	})
}

// Promise (Waiter.Suspend "Fenced"; lease fencing): a holder whose lease
// expired cannot suspend, and once an execution suspended and resumed
// under a new lease the old holder can neither complete, suspend, nor
// create a waitpoint; each refusal writes nothing and the new holder
// completes.
func TestWaitPromiseStaleHolderFenced(t *testing.T) {
	f := newWP(t)
	r, err := f.b.CreateExecution(f.ctx, sdk.CreateExecutionArgs{Lane: f.lane, Kind: "wp.job"})
	f.must("CreateExecution", err)
	task, err := f.b.GrantAndClaim(f.ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: f.lane, WorkerID: "fp-worker",
		WorkerInstanceID: "fp-worker-1", GrantTTL: 5 * time.Second}, 100*time.Millisecond)
	f.must("GrantAndClaim", err)
	time.Sleep(200 * time.Millisecond)
	f.refuses("Suspend with an expired lease", sdk.ErrState, "", func() error {
		_, err := f.b.Suspend(f.ctx, task.Handle, sdk.SuspendArgs{})
		return err
	})

	id, old := f.active(-1)
	out := f.suspend(old, sdk.SuspendArgs{})
	f.signal(out.Waitpoints[0].Token, "go", nil)
	cur := f.claim(id)
	for _, c := range []struct {
		what string
		call func() error
	}{
		{"Complete", func() error { return f.b.Complete(f.ctx, old, []byte("stale")) }},
		{"Suspend", func() error { _, err := f.b.Suspend(f.ctx, old, sdk.SuspendArgs{}); return err }},
		{"SuspendByTriple", func() error { _, err := f.b.SuspendByTriple(f.ctx, id, old.Fence(), sdk.SuspendArgs{}); return err }},
		{"CreateWaitpoint", func() error { _, err := f.b.CreateWaitpoint(f.ctx, old, "x", time.Minute); return err }},
	} {
		before := keyspace(t, f.addrs)
		err := c.call()
		if err == nil {
			t.Fatalf("%s with the lease from before the suspension: no error", c.what)
		}
		if k := sdk.KindOf(err); k != sdk.KindState && k != sdk.KindContention {
			t.Fatalf("%s with the old lease: %v (kind %s), want a fence error", c.what, err, k)
		}
		requireUnchanged(t, c.what+" with the old lease", before, keyspace(t, f.addrs))
	}
	f.must("Complete by the resumed holder", f.b.Complete(f.ctx, cur, []byte("ok")))
	if res, err := f.b.GetExecutionResult(f.ctx, id); err != nil || string(res) != "ok" {
		t.Fatalf("result %q, %v; want the resumed holder's", res, err)
	}
}

// Promise (Waiter.ObserveSignals "nil when it never suspended"): an
// execution that never suspended reads nil, no error; a missing one is
// execution_not_found; a malformed id invalid_input.
func TestWaitPromiseObserveSignalsNeverSuspended(t *testing.T) {
	f := newWP(t)
	id, _ := f.active(-1)
	s, err := f.b.ObserveSignals(f.ctx, id)
	if err != nil || s != nil {
		t.Fatalf("ObserveSignals of an execution that never suspended = %+v, %v; want nil, nil", s, err)
	}
	if _, err := f.b.ObserveSignals(f.ctx, sdk.NewExecutionID(1)); !errors.Is(err, sdk.ErrExecutionNotFound) {
		t.Fatalf("ObserveSignals of a missing execution = %v, want execution_not_found", err)
	}
	if _, err := f.b.ObserveSignals(f.ctx, "nope"); !errors.Is(err, sdk.ErrValidation) {
		t.Fatalf("ObserveSignals of a malformed id = %v, want a validation error", err)
	}
}

// Promise (ListSuspendedPage / ListPendingWaitpointsPage "in id order",
// NextCursor "\"\" on the last page"): paging with a small limit returns
// every entry once, in id order, and the last page has no cursor.
func TestWaitPromiseListPaging(t *testing.T) {
	f := newWP(t)
	const p, n = 5, 5
	var susp []string
	var pend []string
	for range n {
		id, h := f.active(p)
		pw, err := f.b.CreateWaitpoint(f.ctx, h, "pw", time.Minute)
		f.must("CreateWaitpoint", err)
		pend = append(pend, string(pw.ID))
		f.suspend(h, sdk.SuspendArgs{})
		susp = append(susp, string(id))
	}
	gotS := walkPages(t, "ListSuspended", n, func(cursor sdk.ExecutionID) ([]string, sdk.ExecutionID) {
		page, err := f.b.ListSuspended(f.ctx, p, cursor, 2)
		f.must("ListSuspended", err)
		ids := make([]string, len(page.Entries))
		for i, e := range page.Entries {
			ids[i] = string(e.ExecutionID)
		}
		return ids, page.NextCursor
	})
	gotP := walkPages(t, "ListPendingWaitpoints", n, func(cursor sdk.WaitpointID) ([]string, sdk.WaitpointID) {
		page, err := f.b.ListPendingWaitpoints(f.ctx, p, cursor, 2)
		f.must("ListPendingWaitpoints", err)
		ids := make([]string, len(page.Entries))
		for i, e := range page.Entries {
			ids[i] = string(e.ID)
		}
		return ids, page.NextCursor
	})
	for _, c := range []struct {
		what      string
		got, want []string
	}{{"ListSuspended", gotS, susp}, {"ListPendingWaitpoints", gotP, pend}} {
		want := append([]string(nil), c.want...)
		sortStrings(want)
		if strings.Join(c.got, " ") != strings.Join(want, " ") {
			t.Fatalf("%s paged by 2: %q, want %q (id order, each once)", c.what, c.got, want)
		}
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// Promise (README Dedup: "a suspend repeated with its DedupKey returns the
// first outcome (... a retried suspend after a lost reply gets its tokens
// back)"; Durability: "a producer repeats ... a signal with its dedup
// key"): a suspend whose reply is lost, retried with the same dedup key,
// returns the first suspend's id and tokens and writes nothing; a signal
// whose reply is lost, retried with its dedup key, is a Duplicate of the
// first and counted once.
func TestWaitPromiseRetryAfterLostReply(t *testing.T) {
	direct, p := cutSetup(t)
	b := viaProxy(t, p)
	ctx := context.Background()
	if _, err := direct.SeedWaitpointSecret(ctx, wpKID, wpSecret); err != nil {
		t.Fatal(err)
	}
	r, err := direct.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: flowRestartLane, Kind: "wp.job"})
	if err != nil {
		t.Fatal(err)
	}
	task := claimMember(t, direct, r.ID, 30*time.Second)
	args := sdk.SuspendArgs{DedupKey: "lease-" + task.Handle.LeaseID, Condition: sdk.ResumeCondition{Mode: sdk.MatchCount, Count: 2}}
	replyLost(t, p, "ff_suspend", func() error { _, err := b.Suspend(ctx, task.Handle, args); return err })
	if st, _ := direct.ReadExecutionState(ctx, r.ID); st != sdk.StateSuspended {
		t.Fatalf("after the lost reply: %s, want suspended", st)
	}
	first, err := direct.ObserveSignals(ctx, r.ID)
	if err != nil || first == nil {
		t.Fatalf("ObserveSignals = %+v, %v", first, err)
	}
	again, err := b.Suspend(ctx, task.Handle, args)
	if err != nil {
		t.Fatalf("Suspend retried with its dedup key: %v", err)
	}
	if again.SuspensionID != first.ID || len(again.Waitpoints) != 1 || again.Waitpoints[0].ID != first.Waitpoints[0] || again.Waitpoints[0].Token == "" {
		t.Fatalf("retried Suspend = %+v; want the first suspension %s with its waitpoint %v", again, first.ID, first.Waitpoints)
	}
	tok := again.Waitpoints[0].Token
	sig := sdk.DeliverSignalArgs{Token: tok, Name: "n", DedupKey: "sig-once"}
	replyLost(t, p, "ff_signal", func() error { _, err := b.DeliverSignal(ctx, sig); return err })
	dup, err := b.DeliverSignal(ctx, sig)
	if err != nil || !dup.Duplicate || dup.SignalID == "" {
		t.Fatalf("DeliverSignal retried with its dedup key = %+v, %v; want a duplicate", dup, err)
	}
	s, err := direct.ObserveSignals(ctx, r.ID)
	if err != nil || len(s.Signals) != 1 || s.Signals[0].ID != dup.SignalID || !s.Open {
		t.Fatalf("after the retried signal: %+v, %v; want one counted signal (the duplicate's id), still open", s, err)
	}
	if res, err := b.DeliverSignal(ctx, sdk.DeliverSignalArgs{Token: tok, Name: "n"}); err != nil || res.Effect != sdk.EffectResumed {
		t.Fatalf("the second distinct signal = %+v, %v; want resumed", res, err)
	}
}

// Promise (README Tokens: "The secret never leaves the server in a reply
// or an error"): no outcome or error of seeding, rotating, suspending,
// creating waitpoints or signalling (refused ones included) carries the
// secret, raw or in hex.
func TestWaitPromiseSecretNeverInReplies(t *testing.T) {
	f := newWP(t)
	rotated := []byte("waiting-promises-rotated-secret-01")
	forms := []string{string(wpSecret), fmt.Sprintf("%x", wpSecret), fmt.Sprintf("%X", wpSecret),
		string(rotated), fmt.Sprintf("%x", rotated)}
	var seen []string
	note := func(v any, err error) {
		seen = append(seen, fmt.Sprintf("%+v", v))
		if err != nil {
			seen = append(seen, err.Error(), fmt.Sprintf("%+v", err))
		}
	}
	note(f.b.SeedWaitpointSecret(f.ctx, wpKID, wpSecret))
	note(f.b.SeedWaitpointSecret(f.ctx, "other", rotated))
	note(f.b.RotateWaitpointSecret(f.ctx, "k2", rotated, time.Minute))
	note(f.b.RotateWaitpointSecret(f.ctx, "k2", wpSecret, time.Minute)) // rotation_conflict
	note(f.b.RotateWaitpointSecret(f.ctx, wpKID, rotated, time.Minute)) // rotation_conflict (used before)
	note(f.b.SeedWaitpointSecret(f.ctx, "bad kid", wpSecret))
	_, h := f.active(-1)
	note(f.b.CreateWaitpoint(f.ctx, h, "x", time.Minute))
	out, err := f.b.Suspend(f.ctx, h, sdk.SuspendArgs{})
	note(out, err)
	if err == nil {
		tok := out.Waitpoints[0].Token
		note(f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: tok[:len(tok)-1] + "0", Name: "x"}))
		note(f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: tok, Name: "x"}))
		note(f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: tok, Name: "x"}))
	}
	for _, s := range seen {
		for _, form := range forms {
			if strings.Contains(s, form) {
				t.Fatalf("a reply or error carries the secret: %q", s)
			}
		}
	}
}

// Promise (README Operators: "CancelExecution cancels a suspended
// execution (its waitpoints close: later signals get waitpoint_closed)";
// EffectBuffered "kept by a pending waitpoint until its suspend";
// ListPendingWaitpoints "live pending waitpoints"): a waitpoint the
// execution created (CreateWaitpoint) closes when the execution ends, so
// a signal to it is waitpoint_closed, writes nothing, and the waitpoint is
// no longer listed. Checked for an execution cancelled while suspended (the
// pending waitpoint not named by its suspend), one cancelled while active
// and one completed.
func TestWaitPromisePendingWaitpointOfEndedExecution(t *testing.T) {
	f := newWP(t)
	for _, end := range []string{"cancel while suspended", "cancel while active", "complete"} {
		id, h := f.active(4)
		pw, err := f.b.CreateWaitpoint(f.ctx, h, "cb", time.Minute)
		f.must("CreateWaitpoint", err)
		switch end {
		case "cancel while suspended":
			f.suspend(h, sdk.SuspendArgs{})
			fallthrough
		case "cancel while active":
			_, err = f.b.CancelExecution(f.ctx, sdk.CancelExecutionArgs{ExecutionID: id, Reason: "stop"})
			f.must("CancelExecution", err)
		case "complete":
			f.must("Complete", f.b.Complete(f.ctx, h, nil))
		}
		f.refuses("a signal to the pending waitpoint after "+end, sdk.ErrState, sdk.CodeWaitpointClosed, func() error {
			_, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: pw.Token, Name: "late"})
			return err
		})
		page, err := f.b.ListPendingWaitpoints(f.ctx, 4, "", 10)
		f.must("ListPendingWaitpoints", err)
		for _, e := range page.Entries {
			if e.ID == pw.ID {
				t.Fatalf("after %s: the ended execution's waitpoint is still listed pending: %+v", end, e)
			}
		}
	}
}

// Promise (SeedOutcome.SameSecret "the current kid is the one given, with
// the same secret"; README "a second seed keeps the first"; rotation
// conflicts are rotation_conflict): a repeated seed of the same kid and
// secret is AlreadySeeded and SameSecret; the same kid with another secret
// is not SameSecret and keeps the first; rotating to the current kid with
// another secret, or back to a kid used before, is rotation_conflict
// (kind conflict) and writes nothing.
func TestWaitPromiseSeedAndRotateOutcomes(t *testing.T) {
	f := newWP(t)
	out, err := f.b.SeedWaitpointSecret(f.ctx, wpKID, wpSecret)
	f.must("SeedWaitpointSecret repeated", err)
	if !out.AlreadySeeded || !out.SameSecret || out.CurrentKID != wpKID {
		t.Fatalf("repeated seed = %+v, want already seeded, same secret, kid %s", out, wpKID)
	}
	out, err = f.b.SeedWaitpointSecret(f.ctx, wpKID, []byte("another-secret-of-the-same-kid"))
	f.must("SeedWaitpointSecret other secret", err)
	if !out.AlreadySeeded || out.SameSecret {
		t.Fatalf("seed of the kid with another secret = %+v, want already seeded, not the same secret", out)
	}
	_, h := f.active(-1)
	tok := f.suspend(h, sdk.SuspendArgs{}).Waitpoints[0].Token
	if _, err := f.b.RotateWaitpointSecret(f.ctx, "wp-k2", []byte("waiting-promises-second-secret"), 0); err != nil {
		t.Fatal(err)
	}
	f.refuses("rotating to the current kid with another secret", sdk.ErrConflict, sdk.CodeRotationConflict, func() error {
		_, err := f.b.RotateWaitpointSecret(f.ctx, "wp-k2", []byte("waiting-promises-third-secret!"), 0)
		return err
	})
	f.refuses("rotating back to a kid used before", sdk.ErrConflict, sdk.CodeRotationConflict, func() error {
		_, err := f.b.RotateWaitpointSecret(f.ctx, wpKID, wpSecret, 0)
		return err
	})
	f.refuses("a token of the old kid after a rotation with no grace", sdk.ErrValidation, sdk.CodeInvalidToken, func() error {
		_, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: tok, Name: "x"})
		return err
	})
	f.refuses("RotateWaitpointSecret with a negative grace", sdk.ErrValidation, sdk.CodeInvalidInput, func() error {
		_, err := f.b.RotateWaitpointSecret(f.ctx, "wp-k3", []byte("waiting-promises-fourth-secret"), -time.Second)
		return err
	})
}

// Promise (bad input never panics and writes nothing): the waiting
// listings and the suspension scanner's call refuse a partition out of
// range, a negative limit and a malformed cursor with a validation error.
func TestWaitPromiseListBadInput(t *testing.T) {
	f := newWP(t)
	n := f.b.Partitions()
	for _, c := range []struct {
		what string
		call func() error
	}{
		{"ListSuspended of partition -1", func() error { _, err := f.b.ListSuspended(f.ctx, -1, "", 10); return err }},
		{"ListSuspended of a partition past the last", func() error { _, err := f.b.ListSuspended(f.ctx, n, "", 10); return err }},
		{"ListSuspended with a negative limit", func() error { _, err := f.b.ListSuspended(f.ctx, 0, "", -1); return err }},
		{"ListSuspended with a malformed cursor", func() error { _, err := f.b.ListSuspended(f.ctx, 0, "x y", 10); return err }},
		{"ListPendingWaitpoints of a partition past the last", func() error { _, err := f.b.ListPendingWaitpoints(f.ctx, n, "", 10); return err }},
		{"ListPendingWaitpoints with a negative limit", func() error { _, err := f.b.ListPendingWaitpoints(f.ctx, 0, "", -1); return err }},
		{"ListPendingWaitpoints with a malformed cursor", func() error { _, err := f.b.ListPendingWaitpoints(f.ctx, 0, "x y", 10); return err }},
		{"ExpireDueSuspensions of a partition past the last", func() error { _, err := f.b.ExpireDueSuspensions(f.ctx, n, 10); return err }},
	} {
		f.refuses(c.what, sdk.ErrValidation, "", c.call)
	}
}

// Promise (TrimTerminal "with all their keys"; README Tokens "a forged,
// tampered, other waitpoint's or expired-kid token is invalid_token" and
// ff_signal's "a missing waitpoint ... invalid_token"): once an execution
// that suspended ended and is trimmed, nothing of its suspension or
// waitpoints (activated pending ones included) is left, and its old
// tokens are invalid_token, writing nothing.
func TestWaitPromiseTrimmedExecutionLeavesNoWaitpoint(t *testing.T) {
	f := newWP(t)
	const p = 6
	id, h := f.active(p)
	pw, err := f.b.CreateWaitpoint(f.ctx, h, "early", time.Minute)
	f.must("CreateWaitpoint", err)
	out := f.suspend(h, sdk.SuspendArgs{Waitpoints: []string{"a"}, Pending: []sdk.WaitpointID{pw.ID}})
	_, err = f.b.CancelExecution(f.ctx, sdk.CancelExecutionArgs{ExecutionID: id, Reason: "stop"})
	f.must("CancelExecution", err)
	n, err := f.b.TrimTerminal(f.ctx, f.lane, p, 0, 10)
	f.must("TrimTerminal", err)
	if n != 1 {
		t.Fatalf("TrimTerminal = %d, want 1", n)
	}
	for k := range keyspace(t, f.addrs) {
		for _, wp := range out.Waitpoints {
			if strings.Contains(k, string(wp.ID)) || strings.Contains(k, string(id)) {
				t.Fatalf("key %s of the trimmed execution remains", k)
			}
		}
	}
	for _, wp := range out.Waitpoints {
		f.refuses("a signal with a token of a trimmed execution ("+wp.Label+")", sdk.ErrValidation, sdk.CodeInvalidToken, func() error {
			_, err := f.b.DeliverSignal(f.ctx, sdk.DeliverSignalArgs{Token: wp.Token, Name: "late"})
			return err
		})
	}
	if _, err := f.b.ObserveSignals(f.ctx, id); !errors.Is(err, sdk.ErrExecutionNotFound) {
		t.Fatalf("ObserveSignals of a trimmed execution = %v, want execution_not_found", err)
	}
}

// walkPages reads every page of a listing from the empty cursor (read
// returns a page's ids and its next cursor, "" after the last), failing t
// when it takes more than most+1 pages.
func walkPages[C ~string](t *testing.T, what string, most int, read func(C) ([]string, C)) []string {
	t.Helper()
	var all []string
	var cursor C
	for pages := 0; ; pages++ {
		if pages > most {
			t.Fatalf("%s: more pages than entries", what)
		}
		ids, next := read(cursor)
		all = append(all, ids...)
		if next == "" {
			return all
		}
		cursor = next
	}
}
