// Package sdk is the backend-agnostic contract of FlowFabric: the EngineBackend
// interface (composed of small role interfaces), the ids, the lease Handle, the
// typed Error, and the argument and result types every backend speaks.
//
// The package imports nothing else of this module: backends (valkeybackend) import
// it, never the other way round, so a worker written against sdk runs unchanged on
// any backend that passes the conformance suite.
package sdk
