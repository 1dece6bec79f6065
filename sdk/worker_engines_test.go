package sdk_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// syncBuffer is a log sink handlers may write from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWarnsWithoutEngine: a worker that delays work while no engine runs
// (nothing would ever promote it) says so in its log; with an engine
// alive it does not.
func TestWarnsWithoutEngine(t *testing.T) {
	const warning = "no engine is running"
	for _, withEngine := range []bool{false, true} {
		name := map[bool]string{false: "no_engine", true: "engine"}[withEngine]
		t.Run(name, func(t *testing.T) {
			addrs := []string{valkeytest.NewServer(t).Addr()}
			b := e2eConnect(t, addrs)
			if withEngine {
				sup, err := scanner.Start(t.Context(), e2eConnect(t, addrs), scanner.Config{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				if err := sup.WaitOwned(ctx, 1); err != nil {
					t.Fatal(err)
				}
			}
			lane := e2eLane(t, "engines")
			if _, err := b.CreateExecution(context.Background(), sdk.CreateExecutionArgs{Lane: lane, Kind: "k"}); err != nil {
				t.Fatal(err)
			}
			logs := &syncBuffer{}
			delayed := make(chan error, 1)
			_, stop := e2eRunWorker(t, b, sdk.WorkerConfig{WorkerID: "engines", Lanes: []sdk.LaneID{lane},
				Logger: slog.New(slog.NewTextHandler(logs, nil))},
				sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
					delayed <- task.Delay(ctx, time.Now().Add(time.Hour))
					return nil
				}))
			if err := <-delayed; err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(2 * time.Second)
			for !strings.Contains(logs.String(), warning) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			_ = stop()
			if got := strings.Contains(logs.String(), warning); got == withEngine {
				t.Fatalf("engine running %v: warning logged %v; log:\n%s", withEngine, got, logs.String())
			}
		})
	}
}
