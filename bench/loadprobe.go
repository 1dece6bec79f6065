package bench

import (
	"context"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"
)

// loadProbeGap spaces the load probe's calls: 500 a second, a small share
// of any run's commands.
const loadProbeGap = 2 * time.Millisecond

// loadProbe sends one FCALL ff_version every loadProbeGap on c (its own
// connection, no auto-pipelining) while a run goes on, and records each
// round trip that starts in win: what one FCALL round trip costs on this
// machine under the run's load, beside the serial anchor measured on an
// idle server. stop ends it and returns how many calls it sent inside
// win, so per-op counts can leave them out.
func loadProbe(ctx context.Context, c valkey.Client, win Window, lat *Latency) (stop func() int64) {
	pctx, cancel := context.WithCancel(ctx)
	var inWin int64
	var wg sync.WaitGroup
	wg.Go(func() {
		cmd := c.B().Fcall().Function("ff_version").Numkeys(0).Build().Pin()
		tick := time.NewTicker(loadProbeGap)
		defer tick.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			t0 := time.Now()
			if err := c.Do(pctx, cmd).Error(); err != nil {
				continue
			}
			if win.Contains(t0) {
				inWin++
				lat.Shard(0).Record(t0, time.Since(t0))
			}
		}
	})
	return func() int64 {
		cancel()
		wg.Wait()
		return inWin
	}
}
