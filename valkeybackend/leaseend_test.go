package valkeybackend_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// indexesOf names the partition and lane indexes an execution of lane "rec"
// (claimOne's) can be in.
func indexesOf(id sdk.ExecutionID) map[string]string {
	s := string(id)
	tag := s[:strings.IndexByte(s, '}')+1]
	return map[string]string{
		"leases": "ff:i:" + tag + ":leases", "timeouts": "ff:i:" + tag + ":timeouts",
		"deadlines": "ff:i:" + tag + ":deadlines", "active": "ff:i:" + tag + ":rec:active",
	}
}

// requireIndexes checks which of the lease and deadline indexes hold id:
// exactly those named in want.
func requireIndexes(t *testing.T, b *valkeybackend.Backend, id sdk.ExecutionID, what string, want ...string) {
	t.Helper()
	c := b.Client()
	for name, key := range indexesOf(id) {
		err := c.Do(context.Background(), c.B().Zscore().Key(key).Member(string(id)).Build()).Error()
		in := err == nil
		if err != nil && !strings.Contains(err.Error(), "nil") {
			t.Fatal(err)
		}
		if in != slices.Contains(want, name) {
			t.Errorf("%s: in %s = %v, want %v", what, name, in, !in)
		}
	}
}

// The lease-ending calls remove the execution from the timeouts and
// deadlines indexes only when it can be there (an attempt timeout, a
// deadline), write the core hash once, and never touch the lane's active
// index (no longer written: leases holds every leased execution). Whatever
// they skip, no entry is left behind, with or without timeout and deadline.
func TestLeaseEndIndexes(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs, valkeybackend.Options{})
			for _, timed := range []bool{false, true} {
				args := func(retries int) sdk.CreateExecutionArgs {
					a := sdk.CreateExecutionArgs{Retry: sdk.RetryPolicy{MaxRetries: retries}}
					if timed {
						a.AttemptTimeout, a.Deadline = time.Hour, time.Now().Add(time.Hour)
					}
					return a
				}
				// held: where a leased execution is; live: where a non-terminal one is.
				held, live := []string{"leases"}, []string(nil)
				zrems := int64(1)
				if timed {
					held, live = []string{"leases", "timeouts", "deadlines"}, []string{"deadlines"}
					zrems = 3
				}
				name := map[bool]string{false: "plain", true: "timed"}[timed]

				id, task := claimOne(t, b, args(0), time.Minute)
				requireIndexes(t, b, id, name+" claimed", held...)
				resetStats(t, addrs)
				if err := b.Complete(ctx, task.Handle, nil); err != nil {
					t.Fatal(err)
				}
				c := commandCounts(t, addrs)
				if c["zrem"] != zrems || c["hset"] != 1 {
					t.Errorf("%s complete: zrem=%d hset=%d, want %d and 1 (%v)", name, c["zrem"], c["hset"], zrems, c)
				}
				requireIndexes(t, b, id, name+" completed")
				if err := b.Complete(ctx, task.Handle, nil); sdk.CodeOf(err) != sdk.CodeExecutionNotActive {
					t.Fatalf("%s: repeated complete: %v, want execution_not_active", name, err)
				}

				id, task = claimOne(t, b, args(0), time.Minute)
				if out, err := b.Fail(ctx, task.Handle, "boom", "bad"); err != nil || out.RetryScheduled {
					t.Fatalf("%s terminal fail: %+v %v", name, out, err)
				}
				requireIndexes(t, b, id, name+" failed")

				id, task = claimOne(t, b, args(1), time.Minute)
				if out, err := b.Fail(ctx, task.Handle, "boom", "bad"); err != nil || !out.RetryScheduled {
					t.Fatalf("%s retried fail: %+v %v", name, out, err)
				}
				requireIndexes(t, b, id, name+" retried", live...)
				if _, err := b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: id, Reason: "r"}); err != nil {
					t.Fatal(err)
				}
				requireIndexes(t, b, id, name+" retried, then cancelled by an operator")

				id, task = claimOne(t, b, args(0), time.Minute)
				if err := b.Delay(ctx, task.Handle, time.Now().Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
				requireIndexes(t, b, id, name+" delayed", live...)

				id, task = claimOne(t, b, args(0), time.Minute)
				if err := b.Cancel(ctx, task.Handle, "r"); err != nil {
					t.Fatal(err)
				}
				requireIndexes(t, b, id, name+" cancelled by its holder")

				id, _ = claimOne(t, b, args(0), time.Minute)
				if _, err := b.CancelExecution(ctx, sdk.CancelExecutionArgs{ExecutionID: id, Reason: "r"}); err != nil {
					t.Fatal(err)
				}
				requireIndexes(t, b, id, name+" active, cancelled by an operator")
			}
		})
	}
}

// A hand-off sets its inbox's expiry when the push creates the list (and at
// every 32nd length), not on every push: an inbox its worker does not read
// still expires, about a lease TTL after it was created.
func TestInboxExpiry(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 4})
	c := b.Client()
	const lane = "inbox"
	members := make([]string, 40)
	for i := range members {
		members[i] = sdk.NewToken() + " " + sdk.NewToken() + " 5000 w w-1 "
	}
	offer := c.B().Fcall().Function("ff_offer").Numkeys(1).Key("ff:offers:" + lane).
		Arg(append([]string{"60000", "new"}, members...)...).Build()
	if arr, err := c.Do(ctx, offer).ToArray(); err != nil || len(arr) != 2+1+len(members) {
		t.Fatalf("ff_offer: %v %v", arr, err)
	}
	resetStats(t, addrs)
	for i := 1; i <= len(members); i++ {
		r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
		if err != nil || r.State != sdk.StateActive {
			t.Fatalf("create %d: %+v %v, want handed off", i, r, err)
		}
	}
	if n := commandCounts(t, addrs)["pexpire"]; n != 2 {
		t.Errorf("%d PEXPIREs for %d pushes, want 2 (lengths 1 and 32)", n, len(members))
	}
	ttl, err := c.Do(ctx, c.B().Pttl().Key("ff:inbox:w-1").Build()).AsInt64()
	if err != nil || ttl <= 0 || ttl > 5000 {
		t.Fatalf("inbox PTTL %d %v, want in (0, 5000]", ttl, err)
	}
	if n, err := c.Do(ctx, c.B().Llen().Key("ff:inbox:w-1").Build()).AsInt64(); err != nil || n != int64(len(members)) {
		t.Fatalf("inbox length %d %v, want %d", n, err, len(members))
	}
	// Emptied (as a worker's read does), the next push sets a fresh expiry.
	if err := c.Do(ctx, c.B().Del().Key("ff:inbox:w-1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, c.B().Fcall().Function("ff_offer").Numkeys(1).Key("ff:offers:"+lane).
		Arg("60000", "new", sdk.NewToken()+" "+sdk.NewToken()+" 5000 w w-1 ").Build()).ToArray(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
		t.Fatal(err)
	}
	if ttl, err := c.Do(ctx, c.B().Pttl().Key("ff:inbox:w-1").Build()).AsInt64(); err != nil || ttl <= 4000 {
		t.Fatalf("recreated inbox PTTL %d %v, want about 5000", ttl, err)
	}
}

// TestBatchGathersIndexWrites: a batch of creates all handed off, and the
// batch of their completions, write each index key once: one ZCARD of the
// eligible set while the batch knows it stays empty, one RPUSH onto the
// worker's inbox (its PEXPIRE when the push crosses a multiple of 32, as
// one push at a time would), one ZADD of the leases; then one ZREM of the leases and one ZADD of the
// terminal index for all the completions. The indexes hold what one write
// per item would have left.
func TestBatchGathersIndexWrites(t *testing.T) {
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 4})
	c := b.Client()
	const lane, n = "gather", 40
	members := make([]string, n)
	for i := range members {
		members[i] = sdk.NewToken() + " " + sdk.NewToken() + " 5000 w w-1 "
	}
	if err := c.Do(ctx, c.B().Fcall().Function("ff_offer").Numkeys(1).Key("ff:offers:"+lane).
		Arg(append([]string{"60000", "new"}, members...)...).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	args := make([]sdk.CreateExecutionArgs, n)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}
	}
	if _, err := b.CreateExecutions(ctx, args[:1]); err != nil { // the lane registry, and one offer taken
		t.Fatal(err)
	}
	resetStats(t, addrs)
	res, err := b.CreateExecutions(ctx, args[1:])
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.State != sdk.StateActive {
			t.Fatalf("create %d: %+v, want handed off", i, r)
		}
	}
	got := commandCounts(t, addrs)
	// The list existed (1 entry) and the push took it past length 32: one
	// PEXPIRE, as 39 pushes one by one would have made at length 32.
	if got["fcall"] != 1 || got["zcard"] != 1 || got["rpush"] != 1 || got["pexpire"] != 1 || got["zadd"] != 1 || got["zpopmax"] != n-1 {
		t.Fatalf("commands %v: want 1 FCALL, 1 ZCARD, 1 RPUSH, 1 PEXPIRE, 1 ZADD, %d ZPOPMAX", got, n-1)
	}
	if l, err := c.Do(ctx, c.B().Llen().Key("ff:inbox:w-1").Build()).AsInt64(); err != nil || l != n {
		t.Fatalf("inbox length %d %v, want %d", l, err, n)
	}
	if ttl, err := c.Do(ctx, c.B().Pttl().Key("ff:inbox:w-1").Build()).AsInt64(); err != nil || ttl <= 0 || ttl > 5000 {
		t.Fatalf("inbox PTTL %d %v, want in (0, 5000]", ttl, err)
	}
	// Completing the batch's: one ZREM of the leases, one ZADD of the
	// terminal set (the inbox's first entry is the first create's).
	var items []sdk.CompleteItem
	raw, err := c.Do(ctx, c.B().Lrange().Key("ff:inbox:w-1").Start(1).Stop(-1).Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range raw {
		_, task, ok := valkeybackend.ParseHandoffForTest(m)
		if !ok {
			t.Fatalf("inbox entry %q is not a hand-off", m)
		}
		items = append(items, sdk.CompleteItem{Handle: task.Handle})
	}
	resetStats(t, addrs)
	for i, o := range b.CompleteBatch(ctx, items) {
		if o.Err != nil {
			t.Fatalf("complete %d: %v", i, o.Err)
		}
	}
	got = commandCounts(t, addrs)
	if got["fcall"] != 1 || got["zrem"] != 1 || got["zadd"] != 1 || got["hset"] != n-1 || got["hmget"] != n-1 {
		t.Fatalf("commands %v: want 1 FCALL, %d HMGET and HSET, 1 ZREM, 1 ZADD", got, n-1)
	}
	leases, terminal := int64(0), int64(0)
	for p := range 4 {
		tag := sdk.PartitionTag(p)
		l, _ := c.Do(ctx, c.B().Zcard().Key("ff:i:"+tag+":leases").Build()).AsInt64()
		x, _ := c.Do(ctx, c.B().Zcard().Key("ff:i:"+tag+":"+lane+":terminal").Build()).AsInt64()
		leases, terminal = leases+l, terminal+x
	}
	if leases != 1 || terminal != n-1 { // the first create's lease is still held
		t.Fatalf("%d leases and %d terminal entries left, want 1 and %d", leases, terminal, n-1)
	}
}
