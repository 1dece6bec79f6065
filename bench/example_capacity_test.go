package bench_test

import (
	"fmt"

	"github.com/flowfabric/flowfabric-go/bench"
)

// An SLO for ffbench capacity: every clause must hold at a rate.
func ExampleParseSLO() {
	slo, err := bench.ParseSLO("claim p99 <= 5ms and e2e p99.9 <= 20ms")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range slo.Clauses {
		fmt.Printf("%s p%g at most %gµs\n", c.Latency, c.Percentile, c.BoundUS)
	}
	fmt.Println(slo)
	_, err = bench.ParseSLO("claim p99 >= 5ms")
	fmt.Println(err != nil)
	// Output:
	// claim p99 at most 5000µs
	// e2e p99.9 at most 20000µs
	// claim p99 ≤ 5.00ms, e2e p99.9 ≤ 20.0ms
	// true
}

// The targets of a report re-read from its JSON, each with its verdict, as
// ffbench's summary prints them (ffbench report --fail-on-miss exits 3
// when one is missed).
func ExampleGoals() {
	rep := &bench.Report{Results: []*bench.Result{{Scenario: bench.ScenarioRenew, Variant: "sdk", Partitions: 16,
		Throughput: 45000, RawCeiling: 50000, RatioToCeiling: 0.9}}}
	for _, g := range bench.Goals(rep) {
		fmt.Println(g)
	}
	fmt.Println(len(rep.Missed()), "missed")
	// Output:
	// PASS  renew throughput / raw ceiling at P=16: 0.900 (target ≥ 0.9)
	// 0 missed
}
