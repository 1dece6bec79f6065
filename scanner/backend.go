package scanner

import "github.com/flowfabric/flowfabric-go/valkeybackend"

// Backend is everything the standard scanners and ownership need of a
// backend, one small interface per loop; New takes it so the scanners do not
// depend on how the backend talks to Valkey.
type Backend interface {
	LeaseExpiryBackend
	DelayedBackend
	UnblockBackend
	TimeoutsBackend
	SuspensionsBackend
	FlowsBackend
	RetentionBackend
	PeekBackend
	LanesBackend
	OwnershipBackend
	SchedulesBackend
}

var _ Backend = (*valkeybackend.Backend)(nil)
