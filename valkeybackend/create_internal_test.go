package valkeybackend

import (
	"slices"
	"strconv"
	"testing"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// A create with the zero retry policy (most creates) sends the zero
// policy's rendering made once; any other policy is resolved and rendered
// per call, and a bad one is refused before anything is built.
func TestCreateRetryArgs(t *testing.T) {
	b := &Backend{partitions: 4, opts: Options{MaxPayloadBytes: 1 << 10}}
	zero, err := sdk.RetryPolicy{}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := renderRetryArgs(zero)
	if !slices.Equal(defaultRetryArgs, want) {
		t.Fatalf("defaultRetryArgs %v, want %v", defaultRetryArgs, want)
	}
	retryOf := func(p sdk.RetryPolicy) ([]string, error) {
		_, args, err := b.createCall(sdk.CreateExecutionArgs{Lane: "l", Kind: "k", Retry: p})
		if err != nil {
			return nil, err
		}
		return args[6:13], nil
	}
	if got, err := retryOf(sdk.RetryPolicy{}); err != nil || !slices.Equal(got, want) {
		t.Fatalf("zero policy sent %v %v, want %v", got, err, want)
	}
	if _, err := retryOf(sdk.RetryPolicy{MaxRetries: -1}); sdk.CodeOf(err) != sdk.CodeInvalidInput {
		t.Fatalf("negative MaxRetries: %v, want invalid_input", err)
	}
	three, err := retryOf(sdk.RetryPolicy{MaxRetries: 3})
	if err != nil || three[0] != "3" || !slices.Equal(three[1:], want[1:]) {
		t.Fatalf("MaxRetries 3 sent %v %v", three, err)
	}
}

// TestCreateArgvLen: the ARGV length a batch reserves for a create is the
// length appendCreateArgv writes, with and without tags, retry policy and
// trace carrier, and the flags sit at createFlagsArg.
func TestCreateArgvLen(t *testing.T) {
	for _, a := range []sdk.CreateExecutionArgs{
		{Lane: "l", Kind: "k"},
		{Lane: "l", Kind: "k", Tags: map[string]string{"a": "1", "b": "2"}},
		{Lane: "l", Kind: "k", TraceParent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01", LeaseHistory: true},
		{Lane: "l", Kind: "k", Retry: sdk.RetryPolicy{MaxRetries: 3}, Tags: map[string]string{"a": "1"}},
	} {
		r, err := a.Resolve()
		if err != nil {
			t.Fatal(err)
		}
		argv := appendCreateArgv([]string{"before"}, r, "{p:1}:x")[1:]
		if len(argv) != createArgvLen(r) {
			t.Errorf("%+v: ARGV of %d, createArgvLen %d", a, len(argv), createArgvLen(r))
		}
		want := 0
		if r.LeaseHistory {
			want |= 2
		}
		if r.TraceParent != "" {
			want |= 4
		}
		if argv[createFlagsArg] != strconv.Itoa(want) {
			t.Errorf("%+v: flags %q at %d, want %d", a, argv[createFlagsArg], createFlagsArg, want)
		}
	}
}
