package sdktest

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// maxCheckedPayload bounds the payload the suite submits to prove the limit
// itself is accepted.
const maxCheckedPayload = 16 << 20

// testBadInput: malformed input gets a validation error and writes nothing.
func testBadInput(e *env) {
	const lane sdk.LaneID = "sdktest-input"
	// Some state to damage: a waiting execution and a leased one.
	waiting := e.create(simple(lane))
	leased := e.create(simple(lane))
	c := e.claim(leased, lane, leaseTTL)
	h := c.Handle

	invalid := func(what string, call func() error, want ...error) {
		e.t.Helper()
		if len(want) == 0 {
			want = []error{sdk.ErrValidation}
		}
		err := e.rejects(what, call, want...)
		if !errorsIsValidation(err) {
			e.t.Fatalf("%s: %v is not a validation error", what, err)
		}
	}
	create := func(mutate func(*sdk.CreateExecutionArgs)) func() error {
		return func() error {
			args := simple(lane)
			mutate(&args)
			_, err := e.b.CreateExecution(e.ctx, args)
			return err
		}
	}

	// CreateExecution.
	createCases := []struct {
		name   string
		mutate func(*sdk.CreateExecutionArgs)
		want   []error
	}{
		{"empty lane", func(a *sdk.CreateExecutionArgs) { a.Lane = "" }, nil},
		{"lane with a space", func(a *sdk.CreateExecutionArgs) { a.Lane = "a b" }, nil},
		{"lane with {", func(a *sdk.CreateExecutionArgs) { a.Lane = "a{b" }, nil},
		{"lane with }", func(a *sdk.CreateExecutionArgs) { a.Lane = "a}b" }, nil},
		{"lane with a comma", func(a *sdk.CreateExecutionArgs) { a.Lane = "a,b" }, nil},
		{"empty kind", func(a *sdk.CreateExecutionArgs) { a.Kind = "" }, nil},
		{"kind with a newline", func(a *sdk.CreateExecutionArgs) { a.Kind = "a\nb" }, nil},
		{"capability a,b", func(a *sdk.CreateExecutionArgs) { a.RequiredCapabilities = []string{"a,b"} },
			[]error{codeErr(sdk.CodeInvalidCapabilities)}},
		{"capability a b", func(a *sdk.CreateExecutionArgs) { a.RequiredCapabilities = []string{"a b"} },
			[]error{codeErr(sdk.CodeInvalidCapabilities)}},
		{"empty capability", func(a *sdk.CreateExecutionArgs) { a.RequiredCapabilities = []string{"gpu", ""} },
			[]error{codeErr(sdk.CodeInvalidCapabilities)}},
		{"priority -1", func(a *sdk.CreateExecutionArgs) { a.Priority = -1 }, nil},
		{"priority 9001", func(a *sdk.CreateExecutionArgs) { a.Priority = sdk.MaxPriority + 1 }, nil},
		{"negative AttemptTimeout", func(a *sdk.CreateExecutionArgs) { a.AttemptTimeout = -time.Second }, nil},
		{"negative DedupTTL", func(a *sdk.CreateExecutionArgs) { a.IdempotencyKey = "k"; a.DedupTTL = -time.Second }, nil},
		{"negative MaxRetries", func(a *sdk.CreateExecutionArgs) { a.Retry.MaxRetries = -1 }, nil},
		{"negative backoff", func(a *sdk.CreateExecutionArgs) { a.Retry.Backoff.Initial = -time.Second }, nil},
		{"jitter above 1", func(a *sdk.CreateExecutionArgs) { a.Retry.Backoff.Jitter = 1.5 }, nil},
		{"malformed ID", func(a *sdk.CreateExecutionArgs) { a.ID = "{p:0}:not-a-uuid" }, nil},
		{"ID beyond the partitions", func(a *sdk.CreateExecutionArgs) { a.ID = sdk.NewExecutionID(e.b.Partitions()) }, nil},
		{"MaxTags+1 tags", func(a *sdk.CreateExecutionArgs) { a.Tags = manyTags(sdk.MaxTags+1, 1) }, nil},
		{"a tag value over MaxTagValueBytes", func(a *sdk.CreateExecutionArgs) {
			a.Tags = map[string]string{"big": strings.Repeat("v", sdk.MaxTagValueBytes+1)}
		}, nil},
		{"tags over MaxTagsBytes together", func(a *sdk.CreateExecutionArgs) {
			a.Tags = manyTags(sdk.MaxTagsBytes/sdk.MaxTagValueBytes+1, sdk.MaxTagValueBytes)
		}, nil},
		{"an empty tag name", func(a *sdk.CreateExecutionArgs) { a.Tags = map[string]string{"": "v"} }, nil},
		{"an idempotency key over its limit", func(a *sdk.CreateExecutionArgs) {
			a.IdempotencyKey = strings.Repeat("k", sdk.MaxIdempotencyKeyBytes+1)
		}, nil},
	}
	if e.h.MaxPayloadBytes > 0 {
		createCases = append(createCases, struct {
			name   string
			mutate func(*sdk.CreateExecutionArgs)
			want   []error
		}{"payload of MaxPayloadBytes+1", func(a *sdk.CreateExecutionArgs) {
			a.Payload = bytes.Repeat([]byte{0xab}, e.h.MaxPayloadBytes+1)
		}, []error{sdk.ErrPayloadTooLarge}}, struct {
			name   string
			mutate func(*sdk.CreateExecutionArgs)
			want   []error
		}{"payload plus tags over MaxPayloadBytes", func(a *sdk.CreateExecutionArgs) {
			a.Payload = bytes.Repeat([]byte{0xab}, e.h.MaxPayloadBytes-4)
			a.Tags = map[string]string{"tag": "vv"}
		}, []error{sdk.ErrPayloadTooLarge}})
	} else {
		e.t.Log("Harness.MaxPayloadBytes is 0: payload limit not checked")
	}
	for _, tc := range createCases {
		invalid("CreateExecution with "+tc.name, create(tc.mutate), tc.want...)
	}

	// Malformed execution ids.
	badIDs := []sdk.ExecutionID{
		"",
		"abc",
		"{p:1}:not-a-uuid",
		sdk.ExecutionID("{p:99999}:" + uuidOf(sdk.NewExecutionID(0))),
		sdk.NewExecutionID(e.b.Partitions()), // one past the last partition
	}
	for _, id := range badIDs {
		name := "(" + string(id) + ")"
		invalid("DescribeExecution"+name, func() error { _, err := e.b.DescribeExecution(e.ctx, id); return err })
		invalid("ReadExecutionState"+name, func() error { _, err := e.b.ReadExecutionState(e.ctx, id); return err })
		invalid("GetExecutionResult"+name, func() error { _, err := e.b.GetExecutionResult(e.ctx, id); return err })
		invalid("CancelExecution"+name, func() error {
			_, err := e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: id})
			return err
		})
		invalid("ChangePriority"+name, func() error {
			_, err := e.b.ChangePriority(e.ctx, sdk.ChangePriorityArgs{ExecutionID: id, Priority: 1})
			return err
		})
		invalid("IssueClaimGrant"+name, func() error {
			_, err := e.b.IssueClaimGrant(e.ctx, grantArgs(id, lane, workerID))
			return err
		})
		invalid("ClaimExecution"+name, func() error {
			_, err := e.b.ClaimExecution(e.ctx, claimArgs(id, lane, leaseTTL))
			return err
		})
		invalid("RevokeLease"+name, func() error {
			_, err := e.b.RevokeLease(e.ctx, sdk.RevokeLeaseArgs{ExecutionID: id})
			return err
		})
	}

	// Other operator and scheduling arguments.
	invalid("ChangePriority to -1", func() error {
		_, err := e.b.ChangePriority(e.ctx, sdk.ChangePriorityArgs{ExecutionID: waiting, Priority: -1})
		return err
	})
	invalid("ChangePriority to 9001", func() error {
		_, err := e.b.ChangePriority(e.ctx, sdk.ChangePriorityArgs{ExecutionID: waiting, Priority: sdk.MaxPriority + 1})
		return err
	})
	invalid("IssueClaimGrant with capability a,b", func() error {
		_, err := e.b.IssueClaimGrant(e.ctx, grantArgs(waiting, lane, workerID, "a,b"))
		return err
	})
	invalid("IssueClaimGrant with an empty worker id", func() error {
		_, err := e.b.IssueClaimGrant(e.ctx, grantArgs(waiting, lane, ""))
		return err
	})
	invalid("IssueClaimGrant with a negative GrantTTL", func() error {
		a := grantArgs(waiting, lane, workerID)
		a.GrantTTL = -time.Second
		_, err := e.b.IssueClaimGrant(e.ctx, a)
		return err
	})
	invalid("ScanEligibleExecutions with an empty lane", func() error {
		_, err := e.b.ScanEligibleExecutions(e.ctx, sdk.ScanEligibleArgs{Lane: "", Partition: 0})
		return err
	})
	for _, p := range []int{-1, e.b.Partitions()} {
		invalid("ScanEligibleExecutions on a partition out of range", func() error {
			_, err := e.b.ScanEligibleExecutions(e.ctx, sdk.ScanEligibleArgs{Lane: lane, Partition: p})
			return err
		})
		invalid("PromoteDelayed on a partition out of range", func() error {
			_, err := e.b.PromoteDelayed(e.ctx, sdk.PromoteDelayedArgs{Lane: lane, Partition: p})
			return err
		})
		invalid("ListExecutions on a partition out of range", func() error {
			_, err := e.b.ListExecutions(e.ctx, p, "", 10)
			return err
		})
	}

	// Malformed handles.
	badHandles := []struct {
		name string
		h    sdk.Handle
	}{
		{"epoch 0", func() sdk.Handle { x := h; x.Epoch = 0; return x }()},
		{"lease id not a uuid", func() sdk.Handle { x := h; x.LeaseID = "not-a-lease"; return x }()},
		{"empty lease id", func() sdk.Handle { x := h; x.LeaseID = ""; return x }()},
		{"malformed execution id", func() sdk.Handle { x := h; x.ExecutionID = "abc"; return x }()},
		{"zero handle", sdk.Handle{}},
	}
	for _, bh := range badHandles {
		for _, lc := range e.leaseCalls() {
			invalid(lc.name+" with a handle with "+bh.name, func() error { return lc.call(bh.h) })
		}
	}
	invalid("Delay with a zero time", func() error { return e.b.Delay(e.ctx, h, time.Time{}) })
	invalid("Progress 101%", func() error { return e.b.Progress(e.ctx, h, 101, "") })
	invalid("Progress -1%", func() error { return e.b.Progress(e.ctx, h, -1, "") })
	long := strings.Repeat("r", sdk.MaxReasonBytes+1)
	invalid("Progress with a message over MaxReasonBytes", func() error { return e.b.Progress(e.ctx, h, 5, long) })
	invalid("Fail with a reason over MaxReasonBytes", func() error { _, err := e.b.Fail(e.ctx, h, long, "c"); return err })
	invalid("Cancel with a reason over MaxReasonBytes", func() error { return e.b.Cancel(e.ctx, h, long) })
	invalid("CancelExecution with a reason over MaxReasonBytes", func() error {
		_, err := e.b.CancelExecution(e.ctx, sdk.CancelExecutionArgs{ExecutionID: waiting, Reason: long})
		return err
	})
	invalid("RevokeLease with a reason over MaxReasonBytes", func() error {
		_, err := e.b.RevokeLease(e.ctx, sdk.RevokeLeaseArgs{ExecutionID: leased, Reason: long})
		return err
	})

	// The lease survived all of it.
	e.requireState(leased, sdk.StateActive, "after bad input")
	if _, err := e.b.Renew(e.ctx, h); err != nil {
		e.t.Fatalf("Renew after bad input = %v", err)
	}
	e.requireState(waiting, sdk.StateWaiting, "after bad input")

	// The limit itself is accepted, byte for byte.
	if n := e.h.MaxPayloadBytes; n > 0 && n <= maxCheckedPayload {
		args := simple(lane)
		args.Payload = bytes.Repeat([]byte{0x00, 0xff}, n/2+1)[:n]
		id := e.create(args)
		e.requireContext(id, lane, args.Kind, args.Payload, nil)
	}
}

// manyTags returns n tags whose values are size bytes each.
func manyTags(n, size int) map[string]string {
	tags := make(map[string]string, n)
	for i := range n {
		tags[fmt.Sprintf("t%d", i)] = strings.Repeat("v", size)
	}
	return tags
}

func errorsIsValidation(err error) bool { return sdk.KindOf(err) == sdk.KindValidation }

// uuidOf returns the uuid part of a well-formed id.
func uuidOf(id sdk.ExecutionID) string { return string(id)[len(id.Tag())+1:] }
