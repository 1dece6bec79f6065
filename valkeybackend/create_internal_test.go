package valkeybackend

import (
	"slices"
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
