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
// error still fails (sdk.CodeUnavailable); its retry, once the load is
// done, succeeds. The check reads each reply's error only, so calls that
// succeed pay nothing for it.
type healingClient struct {
	valkey.Client
	b *Backend
}

func (c healingClient) Do(ctx context.Context, cmd valkey.Completed) valkey.ValkeyResult {
	r := c.Client.Do(ctx, cmd)
	if err := r.Error(); err != nil {
		c.b.libraryMissing(err)
	}
	return r
}

func (c healingClient) DoMulti(ctx context.Context, multi ...valkey.Completed) []valkey.ValkeyResult {
	rs := c.Client.DoMulti(ctx, multi...)
	for _, r := range rs {
		if err := r.Error(); err != nil {
			c.b.libraryMissing(err)
		}
	}
	return rs
}

// healEvery bounds how often a missing library starts a Prepare.
const healEvery = time.Second

// libraryMissing starts a background Prepare when err says a node lacks
// the library, unless one started within healEvery or the backend was
// told not to prepare (Options.SkipPrepare: the operator loads it).
func (b *Backend) libraryMissing(err error) {
	if b.opts.SkipPrepare {
		return
	}
	ve, ok := valkey.IsValkeyErr(err)
	if !ok || !strings.Contains(ve.Error(), "Function not found") {
		return
	}
	now := time.Now().UnixNano()
	last := b.healedAt.Load()
	if now-last < int64(healEvery) || !b.healedAt.CompareAndSwap(last, now) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = b.prepare(ctx, b.lib)
	}()
}
