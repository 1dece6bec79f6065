package valkeybackend

import "github.com/flowfabric/flowfabric-go/sdk"

// ParseArrivalForTest exposes parseArrival to the external tests.
var ParseArrivalForTest = parseArrival

// ParseLeaseEventForTest exposes parseLeaseEvent to the external tests.
var ParseLeaseEventForTest = parseLeaseEvent

// PendingArrivalsForTest counts lane's pending arrivals without taking them.
func (b *Backend) PendingArrivalsForTest(lane string) int {
	b.arrive.mu.Lock()
	defer b.arrive.mu.Unlock()
	return len(b.arrive.pending[sdk.LaneID(lane)])
}

// ParseHandoffForTest exposes parseHandoff to the external tests.
var ParseHandoffForTest = parseHandoff

// AttemptsOfForTest exposes attemptsOf to the external tests.
var AttemptsOfForTest = attemptsOf

// QuotaKeyForTest and BudgetKeyForTest expose the policy key layout to the
// raw-call tests.
func QuotaKeyForTest(q string) string  { return defaultKeys.quotaKey(sdk.QuotaID(q)) }
func BudgetKeyForTest(b string) string { return defaultKeys.budgetKey(sdk.BudgetID(b)) }

// ScheduleKeysForTest exposes schedule id's record and partition indexes,
// and its partition, to the hostile tests.
func (b *Backend) ScheduleKeysForTest(id string) (record, all, due string, partition int) {
	p := b.schedulePartition(sdk.ScheduleID(id))
	tag := sdk.PartitionTag(p)
	all, due = b.ks.scheduleIndexKeys(tag)
	return b.ks.scheduleKey(tag, sdk.ScheduleID(id)), all, due, p
}
