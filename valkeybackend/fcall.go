package valkeybackend

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// fcall builds an FCALL of library function fn, named as in
// lua/flowfabric.lua ("ff_create"): b.function maps it to the namespace's.
func (b *Backend) fcall(fn string, keys []string, args ...string) valkey.Completed {
	return b.client.B().Fcall().Function(b.function(fn)).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// fcallRO builds an FCALL_RO of a no-writes library function.
func (b *Backend) fcallRO(fn string, keys []string, args ...string) valkey.Completed {
	return b.client.B().FcallRo().Function(b.function(fn)).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// FunctionName is library function fn ("ff_renew", as lua/flowfabric.lua
// names it) as b's namespace loads it ("<ns>_renew"), for callers that send
// a raw FCALL (the harness's anchors).
func (b *Backend) FunctionName(fn string) string { return b.function(fn) }

// function maps a library function's name to b's namespace: itself in the
// default namespace, "<ns>_<name>" from a table cut at Connect in another
// (no allocation per call).
func (b *Backend) function(fn string) string {
	if b.fnames == nil {
		return fn
	}
	if n, ok := b.fnames[fn]; ok {
		return n
	}
	return b.ks.ns + strings.TrimPrefix(fn, lua.DefaultNamespace) // not a library function: the server says so
}

// registered finds the names lua/flowfabric.lua registers.
var registered = regexp.MustCompile(`redis\.register_function[({]\s*(?:function_name\s*=\s*)?'(ff_[a-z0-9_]+)'`)

// functionNames is the table b.function reads: nil for the default
// namespace.
func functionNames(ns string) map[string]string {
	if ns == DefaultNamespace {
		return nil
	}
	m := map[string]string{}
	for _, g := range registered.FindAllStringSubmatch(lua.Source(), -1) {
		m[g[1]] = ns + strings.TrimPrefix(g[1], lua.DefaultNamespace)
	}
	return m
}

// reply is a decoded success envelope {1, status, fields...}.
type reply struct {
	status string
	fields []string
}

func (r reply) field(i int) string {
	if i < len(r.fields) {
		return r.fields[i]
	}
	return ""
}

func (r reply) int(i int) int64 {
	n, _ := strconv.ParseInt(r.field(i), 10, 64)
	return n
}

func (r reply) uint(i int) uint64 {
	n, _ := strconv.ParseUint(r.field(i), 10, 64)
	return n
}

func (r reply) time(i int) time.Time { return msTime(r.int(i)) }

// decode turns one FCALL result into a reply or a typed error. Every function
// of the library answers {1, status, fields...} or {0, code, detail...}; a
// Redis error is a transport fault or a library bug.
func decode(op string, res valkey.ValkeyResult) (reply, error) {
	if err := res.Error(); err != nil {
		return reply{}, backendError(op, err)
	}
	arr, err := res.ToArray()
	if err != nil || len(arr) < 2 {
		return reply{}, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "reply is not an envelope", Err: err}
	}
	flag, err := arr[0].AsInt64()
	if err != nil {
		return reply{}, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "envelope flag is not an integer", Err: err}
	}
	status, err := arr[1].ToString()
	if err != nil {
		return reply{}, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "envelope status is not a string", Err: err}
	}
	fields := make([]string, 0, len(arr)-2)
	for _, m := range arr[2:] {
		s, err := m.ToString()
		if err != nil {
			if m.IsNil() {
				s = ""
			} else if n, ierr := m.AsInt64(); ierr == nil {
				s = strconv.FormatInt(n, 10)
			} else {
				return reply{}, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "envelope field is not a string", Err: err}
			}
		}
		fields = append(fields, s)
	}
	if flag == 1 {
		return reply{status: status, fields: fields}, nil
	}
	return reply{}, sdk.NewError(op, status, "", fields...)
}

// backendError classifies a client-side or server error.
func backendError(op string, err error) error {
	var loading *libraryLoading
	if errors.As(err, &loading) {
		return &sdk.Error{Kind: sdk.KindTransport, Code: sdk.CodeTransport, Op: op,
			Msg: "flowfabric library not loaded on this node yet; it is being loaded, try again", Err: loading.err}
	}
	var se *sdk.Error
	if errors.As(err, &se) {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &sdk.Error{Kind: sdk.KindTimeout, Code: sdk.CodeTimeout, Op: op, Err: err}
	case errors.Is(err, context.Canceled):
		return &sdk.Error{Kind: sdk.KindTimeout, Code: sdk.CodeTimeout, Op: op, Msg: "cancelled", Err: err}
	}
	if pe := permissionError(op, "", err); pe != nil {
		return pe
	}
	if ve, ok := valkey.IsValkeyErr(err); ok {
		msg := ve.Error()
		switch {
		case ve.IsTryAgain(), ve.IsClusterDown(), ve.IsLoading(),
			strings.HasPrefix(msg, "BUSY"), strings.HasPrefix(msg, "MASTERDOWN"),
			strings.HasPrefix(msg, "READONLY"),
			// min-replicas-to-write: the primary refuses writes while too
			// few replicas are connected and current.
			strings.HasPrefix(msg, "NOREPLICAS"):
			return sdk.TransportError(op, err)
		case strings.Contains(msg, "Script attempted to access a non local key"):
			// A function that derives a key from an id's tag (not in KEYS)
			// running while its slot migrates: the server checks only the
			// declared keys before it runs, and refuses the derived one
			// once the slot is importing or migrating. Every key shares
			// the slot, so the call succeeds on the owner once the move
			// ends (TestFailoverClusterSlotMigration met it in
			// ff_complete_batch).
			return sdk.TransportError(op, err)
		case ve.IsNoScript(), strings.Contains(msg, "Function not found"):
			return &sdk.Error{Kind: sdk.KindUnavailable, Code: sdk.CodeUnavailable, Op: op,
				Msg: "flowfabric library not loaded; call Prepare", Err: err}
		}
		return &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "server error", Err: err}
	}
	return sdk.TransportError(op, err)
}

func msTime(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func msString(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func durMS(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
