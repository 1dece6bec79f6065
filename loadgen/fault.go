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
