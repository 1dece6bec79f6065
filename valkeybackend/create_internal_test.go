package valkeybackend

import (
	"slices"
	"testing"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// The zero retry policy (most creates) renders as rendering it would, with
// no allocation; any other policy is rendered and validated per call.
func TestRetryArgsZeroPolicy(t *testing.T) {
	want, err := renderRetryArgs(sdk.RetryPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := retryArgs(sdk.RetryPolicy{})
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("retryArgs(zero) = %v %v, want %v", got, err, want)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = retryArgs(sdk.RetryPolicy{}) }); n != 0 {
		t.Fatalf("retryArgs(zero): %.0f allocations, want 0", n)
	}
	if _, err := retryArgs(sdk.RetryPolicy{MaxRetries: -1}); sdk.CodeOf(err) != sdk.CodeInvalidInput {
		t.Fatalf("negative MaxRetries: %v, want invalid_input", err)
	}
	three, err := retryArgs(sdk.RetryPolicy{MaxRetries: 3})
	if err != nil || three[0] != "3" || slices.Equal(three, want) {
		t.Fatalf("MaxRetries 3 rendered %v %v", three, err)
	}
}
