package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// workerRules reads the README's ff-worker ACL line (the user the README
// says ffctl runs as), with its password placeholder replaced.
func workerRules(t *testing.T, password string) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ACL SETUSER ff-worker (.+)$`).FindStringSubmatch(string(readme))
	if m == nil {
		t.Fatal("README has no ACL SETUSER line for ff-worker")
	}
	rules := strings.Fields(m[1])
	for i, r := range rules {
		if strings.HasPrefix(r, ">") {
			rules[i] = ">" + password
		}
	}
	return rules
}

// TestUnderWorkerACL: every command runs under the README's ff-worker
// user with no denial in the ACL log; a user without a command ffctl
// needs exits 5.
func TestUnderWorkerACL(t *testing.T) {
	f := newFixture(t)
	addrs := []string{f.addr}
	const lane sdk.LaneID = "acl"
	if _, err := f.b.SeedWaitpointSecret(f.ctx, "k1", []byte("ffctl-acl-test-waitpoint-secret")); err != nil {
		t.Fatal(err)
	}
	waiting := f.create(lane, nil)
	dead := f.deadLetter(lane)
	active := f.create(lane, nil)
	ha := f.claim(active, lane, "w")
	if _, err := f.b.AppendFrames(f.ctx, ha, sdk.AppendArgs{Frames: []sdk.Frame{{Type: "log", Payload: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	susp := f.create(lane, nil)
	out, err := f.b.Suspend(f.ctx, f.claim(susp, lane, "w"), sdk.SuspendArgs{Waitpoints: []string{"go"}})
	if err != nil {
		t.Fatal(err)
	}
	pending := f.create(lane, nil)
	if _, err := f.b.CreateWaitpoint(f.ctx, f.claim(pending, lane, "w"), "cb", time.Hour); err != nil {
		t.Fatal(err)
	}
	sub, err := f.b.SubmitFlow(f.ctx, sdk.FlowSpec{Members: []sdk.FlowMember{{Name: "a", Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}}}})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := f.b.PutSchedule(f.ctx, sdk.Schedule{ID: "acl", Every: time.Hour, Lane: lane, Kind: "k"}); err != nil {
		t.Fatal(err)
	}

	const pw = "ffctl-worker-secret"
	if err := valkeytest.SetUser(f.ctx, addrs, "ff-worker", workerRules(t, pw)...); err != nil {
		t.Fatal(err)
	}
	if err := valkeytest.ResetACLLog(f.ctx, addrs); err != nil {
		t.Fatal(err)
	}
	as := func(user, pass string, args ...string) (string, string, int) {
		return f.ctl(append(args, "--username", user, "--password", pass)...)
	}
	for _, args := range [][]string{
		{"executions", "list", "--lane", string(lane)},
		{"dead-letters"},
		{"executions", "describe", string(dead)},
		{"lanes", "--ended"},
		{"lanes", "pause", string(lane)},
		{"lanes", "resume", string(lane)},
		{"suspended"},
		{"waitpoints"},
		{"stream", "tail", string(active), "--no-follow"},
		{"flows", "describe", string(sub.ID)},
		{"executions", "priority", string(waiting), "3"},
		{"executions", "revoke", string(active)},
		{"executions", "replay", string(dead)},
		{"executions", "cancel", string(waiting)},
		{"signal", "--token", out.Waitpoints[0].Token, "--name", "go"},
		{"schedules"},
		{"schedules", "describe", "acl"},
		{"schedules", "pause", "acl"},
		{"schedules", "resume", "acl"},
		{"schedules", "delete", "acl"},
	} {
		if stdout, stderr, code := as("ff-worker", pw, args...); code != exitOK {
			t.Errorf("%v as ff-worker exited %d: %s%s", args, code, stdout, stderr)
		}
	}
	denials, err := valkeytest.ACLDenials(f.ctx, addrs)
	if err != nil {
		t.Fatal(err)
	}
	if len(denials) > 0 {
		t.Fatalf("ffctl under ff-worker was denied: %v", denials)
	}

	// Without ZRANGE a listing is refused: exit 5, the command named.
	rules := slices.DeleteFunc(workerRules(t, pw), func(r string) bool { return r == "+zrange" })
	if err := valkeytest.SetUser(f.ctx, addrs, "ff-narrow", rules...); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := as("ff-narrow", pw, "executions", "list"); code != exitPermission || !strings.Contains(stderr, "zrange") {
		t.Fatalf("listing without zrange exited %d: %s", code, stderr)
	}
}

// TestOnCluster: the commands that read across partitions work on a
// 3-primary cluster, in tables and JSON.
func TestOnCluster(t *testing.T) {
	cl := valkeytest.NewCluster(t)
	addr := strings.Join(cl.Addrs(), ",")
	f := &fixture{t: t, ctx: t.Context(), addr: addr}
	b, err := valkeybackend.Connect(f.ctx, valkeybackend.Options{Addrs: cl.Addrs(), Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	f.b = b
	const lane sdk.LaneID = "cluster"
	var waiting []sdk.ExecutionID
	for range 12 {
		waiting = append(waiting, f.create(lane, nil))
	}
	dead := f.deadLetter(lane)
	active := f.create(lane, nil)
	f.claim(active, lane, "w")

	var page listJSON
	f.okJSON(&page, "executions", "list", "--lane", string(lane), "--state", "waiting")
	if got := ids(page.Executions); !slices.Equal(got, sorted(waiting...)) {
		t.Fatalf("waiting on the cluster: %v, want %v", got, sorted(waiting...))
	}
	var seen []sdk.ExecutionID
	cursor := ""
	for range 20 {
		args := []string{"executions", "list", "--lane", string(lane), "--limit", "5"}
		if cursor != "" {
			args = append(args, "--cursor", cursor)
		}
		var p listJSON
		f.okJSON(&p, args...)
		seen = append(seen, ids(p.Executions)...)
		if cursor = string(p.NextCursor); cursor == "" {
			break
		}
	}
	slices.Sort(seen)
	if want := sorted(append(slices.Clone(waiting), dead, active)...); !slices.Equal(seen, want) {
		t.Fatalf("pages on the cluster: %v, want %v", seen, want)
	}
	f.okJSON(&page, "dead-letters")
	if len(page.Executions) != 1 || page.Executions[0].ID != dead {
		t.Fatalf("dead letters on the cluster: %+v", page)
	}
	var lanes struct{ Lanes []laneJSON }
	f.okJSON(&lanes, "lanes")
	if len(lanes.Lanes) != 1 || lanes.Lanes[0].Counts[sdk.StateWaiting] != 12 || lanes.Lanes[0].Counts[sdk.StateActive] != 1 || lanes.Lanes[0].Ended != 1 {
		t.Fatalf("lanes on the cluster: %+v", lanes)
	}
	if out := f.ok("lanes"); !strings.Contains(out, string(lane)) {
		t.Errorf("lanes table:\n%s", out)
	}
	if out := f.ok("executions", "describe", string(dead)); !strings.Contains(out, "retried") {
		t.Errorf("describe on the cluster:\n%s", out)
	}
	f.ok("executions", "cancel", string(waiting[0]))
	if st := f.state(waiting[0]); st != sdk.StateCancelled {
		t.Errorf("cancel on the cluster: %s", st)
	}
}

// TestNamespaces: --namespace shows one deployment of a shared server and
// acts on it alone; the default namespace is the other's.
func TestNamespaces(t *testing.T) {
	f := newFixture(t) // the default namespace
	nb, err := valkeybackend.Connect(f.ctx, valkeybackend.Options{Addrs: []string{f.addr}, Partitions: testPartitions, Namespace: "billing"})
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	const lane sdk.LaneID = "shared-lane"
	mine := f.create(lane, nil)
	r, err := nb.CreateExecution(f.ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "invoice"})
	if err != nil {
		t.Fatal(err)
	}
	theirs := r.ID

	var page listJSON
	f.okJSON(&page, "executions", "list", "--namespace", "billing")
	if len(page.Executions) != 1 || page.Executions[0].ID != theirs || page.Executions[0].Kind != "invoice" {
		t.Fatalf("billing's list: %+v", page)
	}
	f.okJSON(&page, "executions", "list")
	if len(page.Executions) != 1 || page.Executions[0].ID != mine {
		t.Fatalf("the default namespace's list: %+v", page)
	}
	var lanes struct{ Lanes []laneJSON }
	f.okJSON(&lanes, "lanes", "--namespace", "billing")
	if len(lanes.Lanes) != 1 || lanes.Lanes[0].Counts[sdk.StateWaiting] != 1 {
		t.Fatalf("billing's lanes: %+v", lanes)
	}
	f.ok("lanes", "pause", string(lane), "--namespace", "billing")
	if p, err := nb.LanePolicy(f.ctx, lane); err != nil || !p.Paused {
		t.Fatalf("billing's lane after pause: %+v %v", p, err)
	}
	if p, err := f.b.LanePolicy(f.ctx, lane); err != nil || p.Paused {
		t.Fatalf("the default namespace's lane after billing's pause: %+v %v", p, err)
	}
	f.exits(exitNotFound, "executions", "cancel", string(mine), "--namespace", "billing")
	f.ok("executions", "cancel", string(theirs), "--namespace", "billing")
	if st, err := nb.ReadExecutionState(f.ctx, theirs); err != nil || st != sdk.StateCancelled {
		t.Fatalf("billing's execution: %s %v", st, err)
	}
	if st := f.state(mine); st != sdk.StateWaiting {
		t.Fatalf("the default namespace's execution: %s", st)
	}
	f.exits(exitUsage, "lanes", "--namespace", "Bad:Name")
}
