package scanner_test

import (
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// (c) A worker process SIGKILLed while idle leaves its claim offers
// standing, and creates hand work to them until they expire. The
// hand-off's short first lease (WorkerConfig.HandoffLeaseTTL) bounds what
// that costs: the lease-expiry scanner reclaims the work after it, not
// after the full LeaseTTL (a minute here, past this test's deadline), and a
// live worker completes it. Creates pick the freshest offer and the victim
// offered last, so the first creates do go to its dead offers.
func TestFaultWorkerKilledIdle(t *testing.T) {
	addr := standalone(t)[0]
	b := freshBackend(t, []string{addr})
	runEngine(t, b, faultConfig(t))
	const leaseTTL, handoffTTL = time.Minute, time.Second
	args := []string{"--sdk", "--lease-ttl", leaseTTL.String(), "--handoff-lease-ttl", handoffTTL.String(), "--work-min", "10ms"}
	startWorker(t, addr, "rescuer", append(args, "--concurrency", "4")...)
	victim := startWorker(t, addr, "victim", append(args, "--concurrency", "2")...)
	victim.kill()

	dead := []sdk.ExecutionID{create(t, b, sdk.CreateExecutionArgs{Lane: "fault"}), create(t, b, sdk.CreateExecutionArgs{Lane: "fault"})}
	for _, id := range dead {
		if d := describe(t, b, id); d.State != sdk.StateActive || d.WorkerInstanceID != "victim" {
			t.Fatalf("%s: %s for %q; want handed to the victim's fresher offer", id, d.State, d.WorkerInstanceID)
		}
	}
	live := create(t, b, sdk.CreateExecutionArgs{Lane: "fault"}) // the victim's offers are spent: the rescuer's turn

	took := eventually(t, 20*time.Second, "every execution completed", func() bool { return doneCount(t, b) == 3 })
	t.Logf("work handed to a dead worker completed %v after the creates (first lease %v, lease TTL %v)", took, handoffTTL, leaseTTL)
	done := records(t, b, "fault:completions")
	byID := map[string]record{}
	for _, r := range done {
		byID[r.id] = r
	}
	if len(done) != 3 || len(byID) != 3 {
		t.Fatalf("completions %+v, want one per execution", done)
	}
	for _, id := range append(dead, live) {
		want := 2 // the hand-off to the dead offer, then the reclaim
		if id == live {
			want = 1
		}
		d := describe(t, b, id)
		if r := byID[string(id)]; r.instance != "rescuer" || d.State != sdk.StateCompleted || d.TotalAttempts != want {
			t.Fatalf("%s: completed by %q, %s after %d attempts; want by the rescuer after %d", id, r.instance, d.State, d.TotalAttempts, want)
		}
	}
}
