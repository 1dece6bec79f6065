package valkeybackend

import (
	"sort"
	"strconv"
	"strings"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Attempt history. The core hash holds the current (or last) attempt's own
// fields (progress, failure), which a new attempt starts clean, and one
// record per ended attempt in field attemptFieldPrefix+<index> (keep_attempt
// in the library; the last sdk.AttemptHistoryMax are kept). Records are
// written only where an attempt ends other than by completing (fail, lease
// loss, timeout) or when a replay follows one that did, so a job that runs
// once pays nothing for them.

// attemptFieldPrefix starts the core field of an attempt record.
const attemptFieldPrefix = "attempt:"

// attemptsOf returns the attempt history of an execution's core fields:
// the kept records, oldest first, then the current or last attempt from
// the live fields when it has no record yet.
func attemptsOf(core map[string]string) []sdk.AttemptRecord {
	var out []sdk.AttemptRecord
	for k, v := range core {
		if !strings.HasPrefix(k, attemptFieldPrefix) {
			continue
		}
		if r, ok := parseAttemptRecord(v); ok {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	num := func(f string) int64 { n, _ := strconv.ParseInt(core[f], 10, 64); return n }
	if num("total_attempts") == 0 {
		return out
	}
	cur := sdk.AttemptIndex(num("attempt_index"))
	if len(out) > 0 && out[len(out)-1].Index >= cur {
		return out
	}
	r := sdk.AttemptRecord{
		Index:            cur,
		Type:             sdk.AttemptType(core["attempt_type"]),
		AttemptID:        core["attempt_id"],
		WorkerID:         sdk.WorkerID(core["worker_id"]),
		WorkerInstanceID: sdk.WorkerInstanceID(core["worker_instance"]),
		LeaseEpoch:       uint64(num("lease_epoch")),
		ProgressPercent:  int(num("progress_pct")),
		ProgressMessage:  core["progress_msg"],
		FailureReason:    core["failure_reason"],
		FailureCategory:  core["failure_category"],
	}
	switch st := sdk.PublicState(core["state"]); st {
	case sdk.StateCompleted, sdk.StateFailed, sdk.StateCancelled, sdk.StateExpired:
		r.Outcome, r.EndedAt = string(st), msTime(num("completed_at"))
		if st == sdk.StateCancelled {
			r.FailureReason = core["cancel_reason"]
		}
	}
	return append(out, r)
}

// parseAttemptRecord reads one record: framed format "1", index, type,
// attempt id, worker id, worker instance, lease epoch, ended at (ms),
// outcome, progress percent, progress message, failure reason, failure
// category. A record in another format is skipped (false).
func parseAttemptRecord(v string) (sdk.AttemptRecord, bool) {
	f, ok := unframe(v)
	if !ok || len(f) != 13 || f[0] != "1" {
		return sdk.AttemptRecord{}, false
	}
	idx, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return sdk.AttemptRecord{}, false
	}
	epoch, _ := strconv.ParseUint(f[6], 10, 64)
	ended, _ := strconv.ParseInt(f[7], 10, 64)
	pct, _ := strconv.Atoi(f[9])
	return sdk.AttemptRecord{
		Index:            sdk.AttemptIndex(idx),
		Type:             sdk.AttemptType(f[2]),
		AttemptID:        f[3],
		WorkerID:         sdk.WorkerID(f[4]),
		WorkerInstanceID: sdk.WorkerInstanceID(f[5]),
		LeaseEpoch:       epoch,
		EndedAt:          msTime(ended),
		Outcome:          f[8],
		ProgressPercent:  pct,
		ProgressMessage:  f[10],
		FailureReason:    f[11],
		FailureCategory:  f[12],
	}, true
}
