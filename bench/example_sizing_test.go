package bench_test

import (
	"fmt"

	"github.com/flowfabric/flowfabric-go/bench"
)

// Sizing a deployment from a report's sizing block (as report.json holds
// it after a run): the jobs/s a primary core serves, the ceiling the
// busiest primary sets, and what a planned cluster of N primaries with
// evenly spread partitions would serve at a target utilisation.
func ExampleSizing() {
	s := bench.Sizing{Source: "e2e/closed/P=16", Partitions: 16, JobsPerS: 3850, CPUPerJobUS: 133.4,
		JobsPerSPerCore: 7496.252, Ceiling: 13071.895, Imbalance: 1.72,
		Primaries: []bench.PrimarySizing{
			{Addr: "10.0.0.1:6379", Partitions: []int{0, 1, 4, 5, 8, 9, 10, 11, 14, 15}, CPUPerJobUS: 76.5, Busy: 0.295},
			{Addr: "10.0.0.2:6379", Partitions: []int{3, 7, 13}, CPUPerJobUS: 24.7, Busy: 0.095},
			{Addr: "10.0.0.3:6379", Partitions: []int{2, 6, 12}, CPUPerJobUS: 32.2, Busy: 0.124},
		}}
	fmt.Print(bench.SizingText(&s))
	const primaries, utilisation = 6, 0.6
	fmt.Printf("plan: %d primaries at %.0f%% serve about %.0f jobs/s\n", primaries, 100*utilisation,
		primaries*s.JobsPerSPerCore*utilisation)
	// Output:
	// sizing (e2e/closed/P=16): Valkey CPU 133.4 µs per job; 7.50k jobs/s per primary core; ceiling 13.1k jobs/s (imbalance 1.72)
	//   primary        partitions  cpu µs/job  busy  partition list
	//   10.0.0.1:6379  10          76.5        30%   0,1,4,5,8,9,10,11,14,15
	//   10.0.0.2:6379  3           24.7        10%   3,7,13
	//   10.0.0.3:6379  3           32.2        12%   2,6,12
	// plan: 6 primaries at 60% serve about 26987 jobs/s
}
