package valkeybackend_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// flowEdgeCycle adds a chain's edge to BenchmarkLibraryCost: chains of
// flowChainDepth members, each member's completion (a batch of one that
// offers its slot again, as a worker's) releasing the next member to an
// offer posted before: the server's work of one chain edge, hand-off
// included.
func flowEdgeCycle(ctx context.Context, b *testing.B, addr string, phase func(string, int, func(int))) {
	be, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{addr}, Partitions: 8})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	const lane sdk.LaneID = "chain"
	const depth, chains = 20, 100
	got, offer := watchOffers(b, be, lane, "chain-1", depth*chains)
	if _, err := be.OfferClaims(ctx, *offer(chains + 1)); err != nil {
		b.Fatal(err)
	}
	client := sdk.NewClient(be)
	spec := sdk.FlowSpec{}
	for i := range depth {
		spec.Members = append(spec.Members, sdk.FlowMember{Name: fmt.Sprintf("m%d", i), Args: sdk.CreateExecutionArgs{Lane: lane, Kind: "k", Payload: []byte("payload")}})
		if i > 0 {
			spec.Edges = append(spec.Edges, sdk.FlowEdge{From: fmt.Sprintf("m%d", i-1), To: fmt.Sprintf("m%d", i)})
		}
	}
	for range chains {
		if _, err := client.SubmitFlow(ctx, spec); err != nil {
			b.Fatal(err)
		}
	}
	// Each chain's root was handed off at its submit (through the inbox);
	// every completion hands off the next member of its chain (in its
	// reply).
	phase("flow_chain_complete_per_edge", chains*(depth-1), func(int) {
		t := <-got
		for _, o := range be.CompleteBatch(ctx, []sdk.CompleteItem{{Handle: t.Handle, Offer: offer(1)}}) {
			if o.Err != nil || o.OfferErr != nil {
				b.Fatal(o.Err, o.OfferErr)
			}
			for _, h := range o.Handoffs { // the next member, handed to the completion's offer
				got <- h
			}
		}
	})
}
