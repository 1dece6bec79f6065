// Package sdk is the backend-agnostic contract of FlowFabric: the EngineBackend
// interface (composed of small role interfaces), the ids, the lease Handle, the
// typed Error, and the argument and result types every backend speaks.
//
// On top of the contract it provides what applications use: the Worker
// (claim loop on the direct scan → grant → claim path or the fused claim,
// one batched renewer, handlers keyed by execution kind, graceful shutdown)
// and the Client (submit, batch submit, describe, cancel, results).
//
// The package imports nothing else of this module: backends (valkeybackend) import
// it, never the other way round, so a worker written against sdk runs unchanged on
// any backend that passes the conformance suite.
package sdk
