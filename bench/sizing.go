package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// The sizing model. A primary runs its commands on one thread, so one
// primary serves at most about 1e6 µs of Valkey CPU per second. e2e's
// closed loop measures the Valkey CPU a job costs on each primary (INFO
// cpu deltas over the window, divided by the jobs completed in it); from
// it:
//
//   - jobs/s per primary core = 1e6 / (Valkey CPU µs per job, all primaries):
//     what one primary serves when it does a job's whole server work and its
//     thread is never idle; N primaries with balanced partitions serve N
//     times that;
//   - this deployment's ceiling = 1e6 / (the busiest primary's CPU µs per
//     job): a cluster saturates when its busiest primary does, so partitions
//     spread unevenly over primaries cost capacity (imbalance = the busiest
//     primary's share × N; 1 is even).
//
// Partitions map to primaries through their tag's slot ({p:N}: every key
// of partition N shares the slot of "p:N"), which the run reads from
// CLUSTER SLOTS.

// Sizing is the model's inputs (one e2e closed loop) and outputs.
type Sizing struct {
	// Source is the result the inputs come from ("e2e/closed/P=16").
	Source     string `json:"source"`
	Partitions int    `json:"partitions"`
	// JobsPerS is the closed loop's measured throughput.
	JobsPerS float64 `json:"jobs_per_s"`
	// CPUPerJobUS is Valkey CPU µs per job over all primaries.
	CPUPerJobUS float64         `json:"cpu_us_per_job"`
	Primaries   []PrimarySizing `json:"primaries"`
	// JobsPerSPerCore is 1e6 / CPUPerJobUS.
	JobsPerSPerCore float64 `json:"jobs_per_s_per_primary_core"`
	// Ceiling is 1e6 / the busiest primary's CPU µs per job.
	Ceiling float64 `json:"ceiling_jobs_per_s"`
	// Imbalance is the busiest primary's share of the CPU times the number
	// of primaries (1: even).
	Imbalance float64 `json:"imbalance"`
	// Spread is how other partition counts would spread over the same
	// primaries (slot ownership as measured), to pick a balanced one.
	Spread []PartitionSpread `json:"spread,omitempty"`
}

// PartitionSpread is one partition count's partitions per primary.
type PartitionSpread struct {
	Partitions int   `json:"partitions"`
	PerPrimary []int `json:"per_primary"`
	// Imbalance is the most partitions on one primary over the mean.
	Imbalance float64 `json:"imbalance"`
}

// PrimarySizing is one primary's part.
type PrimarySizing struct {
	Addr string `json:"addr"`
	// Partitions are the partitions whose slot this primary owns.
	Partitions  []int   `json:"partitions"`
	CPUPerJobUS float64 `json:"cpu_us_per_job"`
	// Busy is the fraction of one core the primary used in the window.
	Busy float64 `json:"busy"`
}

// buildSizing computes the model from e2e's closed loop; nil when the
// result carries no per-primary figures.
func (r *Runner) buildSizing(ctx context.Context, closed *Result) *Sizing {
	if closed == nil || len(closed.PrimaryCPUPerOpUS) != len(r.t.primaryAddrs) || closed.Ops <= 0 {
		return nil
	}
	// One CLUSTER SLOTS read serves the run's partition count and every
	// count of the spread.
	bySlot, err := r.t.slotOwners(ctx)
	var owners []int
	if err == nil {
		owners = r.t.partitionOwners(bySlot, closed.Partitions)
	} // else the map is missing; the CPU figures stand
	s := sizingOf(closed, r.t.primaryAddrs, owners)
	if owners != nil && len(r.t.primaryAddrs) > 1 {
		for _, n := range spreadCounts(closed.Partitions) {
			s.Spread = append(s.Spread, spreadOf(n, r.t.partitionOwners(bySlot, n), len(r.t.primaryAddrs)))
		}
	}
	return s
}

// spreadCounts are the partition counts Spread shows: the run's and the
// powers of two from 8 to 1024.
func spreadCounts(p int) []int {
	out := []int{p}
	for n := 8; n <= 1024; n *= 2 {
		if n != p {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// spreadOf counts partitions per primary (owners[p] its primary's index).
func spreadOf(n int, owners []int, primaries int) PartitionSpread {
	s := PartitionSpread{Partitions: n, PerPrimary: make([]int, primaries)}
	for _, o := range owners {
		if o >= 0 && o < primaries {
			s.PerPrimary[o]++
		}
	}
	if n > 0 {
		s.Imbalance = round3(float64(slices.Max(s.PerPrimary)) * float64(primaries) / float64(n))
	}
	return s
}

// sizingOf is the model's arithmetic: closed's per-primary CPU per job,
// addrs naming the primaries in the same order, owners[p] the index of
// partition p's primary (nil: unknown).
func sizingOf(closed *Result, addrs []string, owners []int) *Sizing {
	s := &Sizing{Source: closed.Key(), Partitions: closed.Partitions, JobsPerS: closed.Throughput}
	var busiest float64
	for i, c := range closed.PrimaryCPUPerOpUS {
		ps := PrimarySizing{Addr: addrs[i], CPUPerJobUS: c, Busy: round3(c * closed.Throughput / 1e6), Partitions: []int{}}
		for p, o := range owners {
			if o == i {
				ps.Partitions = append(ps.Partitions, p)
			}
		}
		s.Primaries = append(s.Primaries, ps)
		s.CPUPerJobUS += c
		busiest = max(busiest, c)
	}
	s.CPUPerJobUS = round3(s.CPUPerJobUS)
	if s.CPUPerJobUS > 0 {
		s.JobsPerSPerCore = round3(1e6 / s.CPUPerJobUS)
		s.Ceiling = round3(1e6 / busiest)
		s.Imbalance = round3(busiest / s.CPUPerJobUS * float64(len(s.Primaries)))
	}
	return s
}

// slotOwners maps each cluster slot to the index of the primary (in
// primaryAddrs) that owns it, -1 for none: nil on one server.
func (t *Target) slotOwners(ctx context.Context) ([]int, error) {
	if !t.Cluster {
		return nil, nil
	}
	slots, err := t.raw.Do(ctx, t.raw.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, err
	}
	bySlot := make([]int, 16384)
	for i := range bySlot {
		bySlot[i] = -1
	}
	for _, rng := range slots {
		f, err := rng.ToArray()
		if err != nil || len(f) < 3 {
			return nil, fmt.Errorf("CLUSTER SLOTS: unexpected entry")
		}
		lo, _ := f[0].AsInt64()
		hi, _ := f[1].AsInt64()
		node, err := f[2].ToArray()
		if err != nil || len(node) < 2 {
			return nil, fmt.Errorf("CLUSTER SLOTS: unexpected node")
		}
		host, _ := node[0].ToString()
		port, _ := node[1].AsInt64()
		idx := slices.Index(t.primaryAddrs, host+":"+strconv.FormatInt(port, 10))
		for s := lo; s <= hi && s < 16384; s++ {
			bySlot[s] = idx
		}
	}
	return bySlot, nil
}

// partitionOwners maps each of n partitions to the index of the primary
// that owns its tag's slot, from slotOwners' map: all 0 on one server
// (bySlot nil).
func (t *Target) partitionOwners(bySlot []int, n int) []int {
	owners := make([]int, n)
	if bySlot == nil {
		return owners
	}
	for p := range n {
		// The client's builder computes a key's slot: the tag's, here.
		cmd := t.raw.B().Get().Key(sdk.PartitionTag(p)).Build()
		owners[p] = bySlot[cmd.Slot()]
	}
	return owners
}

// sizingHeadline is the model in one line ("" without it).
func sizingHeadline(s *Sizing) string {
	if s == nil || s.CPUPerJobUS <= 0 {
		return ""
	}
	return fmt.Sprintf("sizing (%s): %.1f Valkey CPU µs per job → %s jobs/s per primary core; this deployment's ceiling %s jobs/s "+
		"(%d primaries, imbalance %.2f); measured %s jobs/s", s.Source, s.CPUPerJobUS, fmtRate(s.JobsPerSPerCore),
		fmtRate(s.Ceiling), len(s.Primaries), s.Imbalance, fmtRate(s.JobsPerS))
}

// SizingText is the model as a plain-text table.
func SizingText(s *Sizing) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sizing (%s): Valkey CPU %.1f µs per job; %s jobs/s per primary core; ceiling %s jobs/s (imbalance %.2f)\n",
		clean(s.Source, maxNameRunes), s.CPUPerJobUS, fmtRate(s.JobsPerSPerCore), fmtRate(s.Ceiling), s.Imbalance)
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  primary\tpartitions\tcpu µs/job\tbusy\tpartition list")
	for _, p := range s.Primaries {
		fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.0f%%\t%s\n", clean(p.Addr, maxNameRunes), len(p.Partitions), p.CPUPerJobUS, 100*p.Busy, intList(p.Partitions))
	}
	tw.Flush()
	if len(s.Spread) > 0 {
		b.WriteString("  partitions per primary by partition count (most over mean):")
		for _, sp := range s.Spread {
			fmt.Fprintf(&b, " %d: %s (%.2f);", sp.Partitions, intList(sp.PerPrimary), sp.Imbalance)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// sizingMarkdown is the report's section on the model.
func sizingMarkdown(b *strings.Builder, s *Sizing) {
	if s == nil {
		return
	}
	b.WriteString("## Sizing\n\n")
	fmt.Fprintf(b, "From %s: %s jobs/s measured, %.1f Valkey CPU µs per job over all primaries → **%s jobs/s per primary core** "+
		"(1e6 / CPU per job); this deployment's ceiling **%s jobs/s** (1e6 / the busiest primary's CPU per job; imbalance %.2f). "+
		"A primary that was far from busy means the clients, not Valkey, limited the run.\n\n",
		md(s.Source, maxNameRunes), fmtRate(s.JobsPerS), s.CPUPerJobUS, fmtRate(s.JobsPerSPerCore), fmtRate(s.Ceiling), s.Imbalance)
	b.WriteString("| primary | partitions | Valkey CPU µs/job | busy (of one core) | partition list |\n|---|--:|--:|--:|---|\n")
	for _, p := range s.Primaries {
		fmt.Fprintf(b, "| %s | %d | %.1f | %.0f%% | %s |\n", md(p.Addr, maxNameRunes), len(p.Partitions), p.CPUPerJobUS, 100*p.Busy, intList(p.Partitions))
	}
	b.WriteString("\n")
	if len(s.Spread) > 0 {
		b.WriteString("Partitions per primary for other partition counts (same slot ownership; imbalance = most on one primary over the mean):\n\n")
		b.WriteString("| partitions | per primary | imbalance |\n|--:|---|--:|\n")
		for _, sp := range s.Spread {
			fmt.Fprintf(b, "| %d | %s | %.2f |\n", sp.Partitions, intList(sp.PerPrimary), sp.Imbalance)
		}
		b.WriteString("\n")
	}
}

func intList(ns []int) string {
	ss := make([]string, len(ns))
	for i, n := range ns {
		ss[i] = strconv.Itoa(n)
	}
	return strings.Join(ss, ",")
}
