package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/flowfabric/flowfabric-go/scanner"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// quietLogger keeps the scanners' logs out of the examples' output.
var quietLogger = slog.New(slog.DiscardHandler)

// exampleBackend starts a throwaway Valkey and connects to it.
func exampleBackend(ctx context.Context) (*valkeybackend.Backend, func()) {
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		log.Fatal(err)
	}
	return b, func() { b.Close(); srv.Close() }
}

// A producer submits an execution; a worker claims it, runs the handler
// registered for its kind, and completes it with a result.
func ExampleWorker() {
	ctx := context.Background()
	backend, done := exampleBackend(ctx)
	defer done()

	client := sdk.NewClient(backend)
	sub, err := client.Submit(ctx, sdk.CreateExecutionArgs{
		Lane: "emails", Kind: "send_email", Payload: []byte("alice@example.com"),
	})
	if err != nil {
		log.Fatal(err)
	}

	mux := sdk.NewMux()
	mux.HandleFunc("send_email", func(ctx context.Context, t *sdk.Task) error {
		// ctx is cancelled if the lease is lost; Complete stores the result.
		return t.Complete(ctx, []byte("sent to "+string(t.Payload)))
	})
	w, err := sdk.NewWorker(backend, sdk.WorkerConfig{WorkerID: "mailer", Lanes: []sdk.LaneID{"emails"},
		// The scanners promote retries and recover crashed work; run them
		// here or in ffengine.
		Alongside: []func(context.Context) error{scanner.Alongside(backend, scanner.Config{Logger: quietLogger})},
	})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(runCtx, mux) }()

	result, err := client.WaitResult(ctx, sub.ID, 5*time.Millisecond)
	fmt.Println(string(result), err)

	stop() // graceful: stop claiming, drain, deregister
	fmt.Println("worker stopped:", <-stopped)
	// Output:
	// sent to alice@example.com <nil>
	// worker stopped: <nil>
}

// A handler error fails the attempt and the execution's retry policy decides
// what happens next; sdk.Failure picks the category the policy filters on.
func ExampleFailure() {
	ctx := context.Background()
	backend, done := exampleBackend(ctx)
	defer done()

	client := sdk.NewClient(backend)
	sub, err := client.Submit(ctx, sdk.CreateExecutionArgs{
		Lane: "imports", Kind: "import",
		Retry: sdk.RetryPolicy{MaxRetries: 3, Backoff: sdk.Backoff{ZeroDelay: true},
			RetryableCategories: []string{"upstream_unavailable"}},
	})
	if err != nil {
		log.Fatal(err)
	}

	var attempts atomic.Int32
	h := sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
		if attempts.Add(1) == 1 {
			return &sdk.Failure{Category: "upstream_unavailable", Err: errors.New("503 from upstream")}
		}
		return &sdk.Failure{Category: "bad_input", Err: errors.New("row 7: not a date")}
	})
	w, err := sdk.NewWorker(backend, sdk.WorkerConfig{WorkerID: "importer", Lanes: []sdk.LaneID{"imports"}, MaxConcurrency: 1})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(runCtx, h) }()
	defer func() { stop(); <-stopped }()

	_, err = client.WaitResult(ctx, sub.ID, 5*time.Millisecond)
	var ee *sdk.ExecutionError
	if errors.As(err, &ee) {
		fmt.Println(ee.State, ee.Category, ee.Reason)
	}
	fmt.Println("attempts:", attempts.Load())
	// Output:
	// failed bad_input row 7: not a date
	// attempts: 2
}

// SubmitBatch pipelines many creates and returns their ids in order.
func ExampleClient_SubmitBatch() {
	ctx := context.Background()
	backend, done := exampleBackend(ctx)
	defer done()

	client := sdk.NewClient(backend)
	args := make([]sdk.CreateExecutionArgs, 1000)
	for i := range args {
		args[i] = sdk.CreateExecutionArgs{Lane: "thumbnails", Kind: "resize", Payload: fmt.Appendf(nil, "img-%d.png", i)}
	}
	res, err := client.SubmitBatch(ctx, args)
	if err != nil {
		log.Fatal(err)
	}
	snap, err := client.Describe(ctx, res[42].ID)
	if err != nil {
		log.Fatal(err)
	}
	ec, err := backend.ReadExecutionContext(ctx, res[42].ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(res), snap.State, string(ec.Payload))
	// Output:
	// 1000 waiting img-42.png
}

// Middleware wraps every handler of a Mux, e.g. to log or time tasks.
func ExampleMux_Use() {
	mux := sdk.NewMux()
	mux.Use(func(next sdk.Handler) sdk.Handler {
		return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) error {
			fmt.Println("start", t.Kind)
			err := next.HandleTask(ctx, t)
			fmt.Println("end", t.Kind, err)
			return err
		})
	})
	mux.HandleFunc("greet", func(ctx context.Context, t *sdk.Task) error {
		fmt.Println("hello,", string(t.Payload))
		return nil
	})
	// The worker calls HandleTask for each claimed task; here by hand.
	_ = mux.HandleTask(context.Background(), &sdk.Task{Kind: "greet", Payload: []byte("world")})
	err := mux.HandleTask(context.Background(), &sdk.Task{Kind: "unknown"})
	fmt.Println(sdk.FailureCategory(err))
	// Output:
	// start greet
	// hello, world
	// end greet <nil>
	// start unknown
	// end unknown no handler for execution kind "unknown"
	// no_handler
}
