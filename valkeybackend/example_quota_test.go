package valkeybackend_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// On one server an idle worker may offer its slot on a lane with a quota:
// the offer names the quota, and the next create admits its execution under
// it before handing it over, so the hand-off carries the admission. The
// worker holds that slot while the task runs and releases it at the end
// (sdk.Worker does all of this by itself).
func ExampleBackend_OfferClaims_quota() {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}, Partitions: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	if err := b.CreateQuotaPolicy(ctx, sdk.QuotaPolicy{ID: "llm", Concurrency: 8}); err != nil {
		log.Fatal(err)
	}
	if err := b.SetLanePolicy(ctx, "summaries", sdk.LanePolicy{Quota: "llm"}); err != nil {
		log.Fatal(err)
	}
	handed := make(chan sdk.ClaimedTask, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := b.WatchHandoffs(wctx, "summarizer-1", func(ct sdk.ClaimedTask) { handed <- ct }); err != nil {
		log.Fatal(err)
	}
	if _, err := b.OfferClaims(ctx, sdk.OfferArgs{Lane: "summaries", LeaseIDs: []string{sdk.NewToken()},
		WorkerID: "summarizer", WorkerInstanceID: "summarizer-1", TTL: time.Minute, Quota: "llm"}); err != nil {
		log.Fatal(err)
	}
	res, err := b.CreateExecution(ctx, sdk.CreateExecutionArgs{Lane: "summaries", Kind: "summarize"})
	if err != nil {
		log.Fatal(err)
	}
	ct := <-handed
	holds, _ := b.QuotaHolds(ctx, "llm")
	fmt.Println(res.State, ct.Admission.Quota, len(holds))

	if err := b.Complete(ctx, ct.Handle, nil); err != nil {
		log.Fatal(err)
	}
	if err := b.ReleaseAdmission(ctx, "llm", ct.Handle.ExecutionID); err != nil {
		log.Fatal(err)
	}
	holds, _ = b.QuotaHolds(ctx, "llm")
	fmt.Println(len(holds))
	// Output:
	// active llm 1
	// 0
}
