package valkeybackend

import (
	"context"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// PrepareWithForTest runs Prepare as a client whose embedded library were
// src (a newer or older build).
func (b *Backend) PrepareWithForTest(ctx context.Context, src string) (sdk.PrepareOutcome, error) {
	lib, err := parseLibrary(src)
	if err != nil {
		return sdk.PrepareOutcome{}, err
	}
	return b.prepare(ctx, lib)
}

// BackendErrorForTest exposes backendError's classification.
var BackendErrorForTest = backendError
