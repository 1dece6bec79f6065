package sdk_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// TestWaitResultIsPushed: WaitResult on an execution that stays active for
// a second and then completes makes no polling reads (the server's
// commandstats show a handful of reads, not one per poll), and returns
// within milliseconds of the completion.
func TestWaitResultIsPushed(t *testing.T) {
	addrs := []string{valkeytest.NewServer(t).Addr()}
	b := e2eConnect(t, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lane := e2eLane(t, "wait")
	r, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.GrantAndClaim(ctx, sdk.IssueClaimGrantArgs{ExecutionID: r.ID, Lane: lane, WorkerID: "w", WorkerInstanceID: "w-1"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := valkeytest.ResetStats(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	client := sdk.NewClient(b)
	type outcome struct {
		res []byte
		err error
		at  time.Time
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := client.WaitResult(ctx, r.ID, time.Millisecond) // a poll of 1ms would read 1,000 times
		done <- outcome{res, err, time.Now()}
	}()
	time.Sleep(time.Second)
	completed := time.Now()
	if err := b.Complete(ctx, c.Handle, []byte("pushed")); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil || string(o.res) != "pushed" {
		t.Fatalf("WaitResult = %q, %v", o.res, o.err)
	}
	calls, err := valkeytest.CommandCalls(ctx, addrs)
	if err != nil {
		t.Fatal(err)
	}
	reads := calls["hget"] + calls["hmget"] + calls["hgetall"] + calls["get"] + calls["exists"]
	if reads > 8 {
		t.Fatalf("WaitResult made %d reads over a second (%v): it polls", reads, calls)
	}
	t.Logf("returned %v after the completion, with %d reads in all (%v)", o.at.Sub(completed).Round(time.Microsecond), reads, calls)
}
