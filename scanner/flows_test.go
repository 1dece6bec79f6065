package scanner_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// The flow scanner repairs what an interruption left: a member still
// waiting for dependencies that have all ended (here its resolution is
// undone by hand, as a crash between the two would leave it), and a
// cancelled flow whose backlog nobody drained.
func TestFlowScannerRepairs(t *testing.T) {
	for _, topo := range both() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()
			addrs := topo.addrs(t)
			b := freshBackend(t, addrs)
			const lane sdk.LaneID = "flows-scan"
			sub, err := b.SubmitFlow(ctx, sdk.FlowSpec{Members: []sdk.FlowMember{
				{Name: "a", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}},
				{Name: "b", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}}},
				Edges: []sdk.FlowEdge{{From: "a", To: "b"}}})
			if err != nil {
				t.Fatal(err)
			}
			a, child := sub.Members["a"], sub.Members["b"]
			c := claim(t, b, a, lane, "w", time.Minute)
			if err := b.Complete(ctx, c.Handle, nil); err != nil {
				t.Fatal(err)
			}
			if st := state(t, b, child); st != sdk.StateWaiting {
				t.Fatalf("b is %s once a completed, want waiting", st)
			}
			// Undo b's resolution, as if a's end had not reached it.
			tag := child.Tag()
			cl, err := valkey.NewClient(valkey.ClientOption{InitAddress: addrs, DisableCache: true})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			for _, cmd := range []valkey.Completed{
				cl.B().Hset().Key("ff:e:"+string(child)+":core").FieldValue().FieldValue("state", "waiting_children").
					FieldValue("dep_ok", "0").Build(),
				cl.B().Zrem().Key("ff:i:" + tag + ":" + string(lane) + ":eligible").Member(string(child)).Build(),
				cl.B().Zadd().Key("ff:i:"+tag+":dep_blocked").ScoreMember().ScoreMember(1, string(child)).Build(),
			} {
				if err := cl.Do(ctx, cmd).Error(); err != nil {
					t.Fatal(err)
				}
			}
			if st := state(t, b, child); st != sdk.StateWaitingChildren {
				t.Fatalf("b is %s after the undo, want waiting_children", st)
			}
			// A cancelled flow whose backlog is left to the scanner.
			ms := make([]sdk.FlowMember, 130)
			for i := range ms {
				ms[i] = sdk.FlowMember{Name: fmt.Sprint(i), Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}}
			}
			big, err := b.SubmitFlow(ctx, sdk.FlowSpec{Members: ms})
			if err != nil {
				t.Fatal(err)
			}
			h, err := b.CancelFlowHeader(ctx, sdk.CancelFlowArgs{Flow: big.ID, Reason: "r"})
			if err != nil || h.Pending == 0 {
				t.Fatalf("CancelFlowHeader = %+v, %v; want a backlog", h, err)
			}
			cfg := testConfig(t)
			cfg.FlowInterval, cfg.FlowGrace = 50*time.Millisecond, 200*time.Millisecond
			runEngine(t, b, cfg)
			eventually(t, 10*time.Second, "the scanner runs the forgotten member", func() bool { return state(t, b, child) == sdk.StateWaiting })
			eventually(t, 10*time.Second, "the scanner drains the backlog", func() bool {
				s, err := b.DescribeFlow(ctx, big.ID)
				return err == nil && s.PendingCancels == 0 && s.Ended == len(ms)
			})
		})
	}
}
