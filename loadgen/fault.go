package loadgen

import (
	"context"
	"errors"
	"time"

	"github.com/valkey-io/valkey-go"
)

// PauseServer freezes every node of c for d with CLIENT PAUSE (writes only
// when writesOnly, else all commands), as a failover or a long fork would.
// It returns once the pause is in place; the server resumes by itself.
func PauseServer(ctx context.Context, c valkey.Client, d time.Duration, writesOnly bool) error {
	ms := max(d.Milliseconds(), 1)
	var errs []error
	for _, node := range c.Nodes() {
		var cmd valkey.Completed
		if writesOnly {
			cmd = node.B().ClientPause().Timeout(ms).Write().Build()
		} else {
			cmd = node.B().ClientPause().Timeout(ms).All().Build()
		}
		errs = append(errs, node.Do(ctx, cmd).Error())
	}
	return errors.Join(errs...)
}

// KillAfter crashes worker i of f after d (or never, when ctx ends first)
// and returns when it did, so a scenario can time recovery from the crash.
func KillAfter(ctx context.Context, f *Fleet, i int, d time.Duration) (time.Time, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	case <-t.C:
	}
	f.Kill(i)
	return time.Now(), nil
}
