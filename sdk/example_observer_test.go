package sdk_test

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// outcomeLog is a WorkerObserver that notes how each task ended (package
// github.com/flowfabric/flowfabric-go/otel has one for OpenTelemetry).
type outcomeLog struct {
	mu   sync.Mutex
	ends []string
	done chan struct{}
}

func (o *outcomeLog) TaskStarted(ctx context.Context, t *sdk.Task) context.Context { return ctx }

func (o *outcomeLog) TaskEnded(ctx context.Context, t *sdk.Task, end sdk.TaskEnd) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ends = append(o.ends, t.Kind+": "+string(end.Outcome)+", carrier "+t.TraceParent)
	if len(o.ends) == 2 {
		close(o.done)
	}
}

func (o *outcomeLog) LeaseRenewing(*sdk.Task, time.Duration) {}
func (o *outcomeLog) LeaseLost(*sdk.Task, error)             {}
func (o *outcomeLog) WorkerError(error)                      {}

// stampCarrier is a ClientObserver that gives every submit a trace
// carrier, which the worker sees as Task.TraceParent.
type stampCarrier struct{}

func (stampCarrier) SubmitStarted(ctx context.Context, args *sdk.CreateExecutionArgs) context.Context {
	args.TraceParent = "from-" + args.Kind
	return ctx
}

func (stampCarrier) SubmitEnded(context.Context, *sdk.CreateExecutionArgs, sdk.CreateExecutionResult, error, time.Duration) {
}

// Observers watch a worker's tasks and a client's submits; the carrier a
// submit's observer sets travels with the execution to the worker.
func ExampleWorkerObserver() {
	ctx := context.Background()
	backend, done := exampleBackend(ctx)
	defer done()

	client := sdk.NewClientWithOptions(backend, sdk.ClientOptions{Observer: stampCarrier{}})
	for _, kind := range []string{"good", "bad"} {
		if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: "observed", Kind: kind}); err != nil {
			log.Fatal(err)
		}
	}
	obs := &outcomeLog{done: make(chan struct{})}
	w, err := sdk.NewWorker(backend, sdk.WorkerConfig{WorkerID: "ex", Lanes: []sdk.LaneID{"observed"}, MaxConcurrency: 1,
		Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() {
		stopped <- w.Run(runCtx, sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
			if t.Kind == "bad" {
				return fmt.Errorf("cannot do %s", t.Kind)
			}
			return nil
		}))
	}()
	<-obs.done
	stop()
	<-stopped
	for _, e := range obs.ends {
		fmt.Println(e)
	}
	// Output:
	// good: completed, carrier from-good
	// bad: failed, carrier from-bad
}
