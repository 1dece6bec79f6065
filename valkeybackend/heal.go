package valkeybackend

import (
	"context"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// A primary can lack the library that every other primary holds: a node
// that joined the cluster by CLUSTER MEET (valkey-cli --cluster add-node
// copies the libraries, a bare MEET does not) and then took slots over, or
// a node restored without its functions. FUNCTION LOAD is keyless, so no
// redirection fixes it: calls on its slots answer "Function not found"
// until something loads the library there.
//
// healingClient is the backend's valkey-go client with one addition: a
// reply "Function not found" starts a Prepare in the background (at most
// one a second), which finds the new primary through the client's
// refreshed topology and loads the library on it. The call that met the
// error fails with a transport error (sdk.CodeTransport: nothing ran, try
// again), so a Worker's completion retries it while its lease can be
// saved and lands once the load is done: a job that succeeded stays
// succeeded through a slot's move to a primary without the library. With
// Options.SkipPrepare nothing loads it here, and the error is
// sdk.CodeUnavailable ("call Prepare"). The check reads each reply's
// error only, so calls that succeed pay nothing for it.
type healingClient struct {
	valkey.Client
	b *Backend
}

func (c healingClient) Do(ctx context.Context, cmd valkey.Completed) valkey.ValkeyResult {
	r := c.Client.Do(ctx, cmd)
	if err := r.Error(); err != nil && c.b.libraryMissing(err) {
		return valkey.NewErrorResult(&libraryLoading{err})
	}
	return r
}

func (c healingClient) DoMulti(ctx context.Context, multi ...valkey.Completed) []valkey.ValkeyResult {
	rs := c.Client.DoMulti(ctx, multi...)
	for i, r := range rs {
		if err := r.Error(); err != nil && c.b.libraryMissing(err) {
			rs[i] = valkey.NewErrorResult(&libraryLoading{err})
		}
	}
	return rs
}

// libraryLoading is a call's error when its node lacked the library and
// a Prepare is loading it; backendError classifies it (retryable, as the
// server's LOADING or TRYAGAIN).
type libraryLoading struct{ err error }

func (e *libraryLoading) Error() string { return e.err.Error() }
func (e *libraryLoading) Unwrap() error { return e.err }

// healEvery bounds how often a missing library starts a Prepare.
const healEvery = time.Second

// libraryMissing reports whether err says a node lacks the library and
// this backend loads it: then it starts a background Prepare, unless one
// started within healEvery. It reports false, and does nothing, when the
// backend was told not to prepare (Options.SkipPrepare: the operator
// loads it).
func (b *Backend) libraryMissing(err error) bool {
	if b.opts.SkipPrepare {
		return false
	}
	ve, ok := valkey.IsValkeyErr(err)
	if !ok || !strings.Contains(ve.Error(), "Function not found") {
		return false
	}
	now := time.Now().UnixNano()
	last := b.healedAt.Load()
	if now-last < int64(healEvery) || !b.healedAt.CompareAndSwap(last, now) {
		return true
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = b.prepare(ctx, b.lib)
	}()
	return true
}
