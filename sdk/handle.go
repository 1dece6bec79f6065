package sdk

import (
	"encoding/binary"
	"time"
)

// BackendTag identifies the backend family that minted a Handle.
type BackendTag uint8

// Backend tags.
const (
	BackendValkey BackendTag = 1
)

// HandleKind says how the lease behind a Handle was obtained.
type HandleKind uint8

// Handle kinds.
const (
	HandleFresh     HandleKind = 1 // a new attempt
	HandleResumed   HandleKind = 2 // the interrupted attempt continues
	HandleReclaimed HandleKind = 3 // a new attempt after a lost lease
)

// LeaseFence is what every write on behalf of a lease must match.
type LeaseFence struct {
	LeaseID   string
	Epoch     uint64
	AttemptID string
}

// Handle is the holder's proof of a lease: the fence plus what renew and the
// terminal calls need. Backends mint it at claim; callers keep it opaque, and
// may persist it with MarshalBinary.
type Handle struct {
	Backend          BackendTag
	Kind             HandleKind
	ExecutionID      ExecutionID
	Lane             LaneID
	AttemptIndex     AttemptIndex
	AttemptID        string
	LeaseID          string
	Epoch            uint64
	LeaseTTL         time.Duration
	WorkerInstanceID WorkerInstanceID
}

// Fence returns the handle's lease fence.
func (h Handle) Fence() LeaseFence {
	return LeaseFence{LeaseID: h.LeaseID, Epoch: h.Epoch, AttemptID: h.AttemptID}
}

// Validate checks that every field is well formed: CallPartition's checks,
// the lease and attempt ids in full, and the worker instance.
func (h Handle) Validate() error {
	if _, err := h.CallPartition(); err != nil {
		return err
	}
	if !isUUID(h.LeaseID) || !isUUID(h.AttemptID) {
		return validationf(CodeMalformedHandle, "handle lease id or attempt id is not a uuid")
	}
	if h.WorkerInstanceID != "" {
		if err := h.WorkerInstanceID.Validate(); err != nil {
			return validationf(CodeMalformedHandle, "handle: %s", err.(*Error).Msg)
		}
	}
	return nil
}

// CallPartition is the check a backend runs on every call on a lease, and
// on every lease of every renewal round; it returns the execution's
// partition. What becomes a key name or a number is checked in full: the
// backend tag and kind, the execution id (its partition tag and uuid), the
// lane, the lease TTL and the epoch. The lease and attempt ids only travel
// as arguments of the fenced call, which compares them with the stored
// lease and writes nothing on a mismatch: here they get a constant-time
// shape check (a uuid's length and dashes), which still refuses an empty
// or made-up id with a validation error. Their full check (Validate) runs
// once, where a handle is decoded (DecodeHandle); a backend's claim mints
// only valid ones.
func (h Handle) CallPartition() (int, error) {
	if h.Backend == 0 {
		return 0, validationf(CodeMalformedHandle, "handle has no backend tag")
	}
	if h.Kind < HandleFresh || h.Kind > HandleReclaimed {
		return 0, validationf(CodeMalformedHandle, "handle kind %d is unknown", h.Kind)
	}
	p, err := h.ExecutionID.Partition()
	if err != nil {
		return 0, validationf(CodeMalformedHandle, "handle: %s", err.(*Error).Msg)
	}
	if err := h.Lane.Validate(); err != nil {
		return 0, validationf(CodeMalformedHandle, "handle: %s", err.(*Error).Msg)
	}
	if !uuidShape(h.LeaseID) || !uuidShape(h.AttemptID) {
		return 0, validationf(CodeMalformedHandle, "handle lease id or attempt id is not a uuid")
	}
	if h.Epoch == 0 {
		return 0, validationf(CodeMalformedHandle, "handle epoch is 0")
	}
	if h.LeaseTTL < time.Millisecond || h.LeaseTTL > maxHandleLeaseTTL {
		return 0, validationf(CodeMalformedHandle, "handle lease ttl %v out of range 1ms..365d", h.LeaseTTL)
	}
	return p, nil
}

// Encoding: "FH", version 1, backend, kind, then uvarint fields and
// uvarint-length-prefixed strings in a fixed order. Decoding rejects unknown
// versions, oversize strings and trailing bytes.
const (
	handleMagic0      = 'F'
	handleMagic1      = 'H'
	handleVersion     = 1
	maxHandleString   = 1024
	maxEncodedHandle  = 8 * 1024
	handleHeaderBytes = 5
	maxHandleLeaseTTL = 365 * 24 * time.Hour
)

// MarshalBinary encodes a valid handle.
func (h Handle) MarshalBinary() ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 160)
	b = append(b, handleMagic0, handleMagic1, handleVersion, byte(h.Backend), byte(h.Kind))
	b = appendString(b, string(h.ExecutionID))
	b = appendString(b, string(h.Lane))
	b = binary.AppendUvarint(b, uint64(h.AttemptIndex))
	b = appendString(b, h.AttemptID)
	b = appendString(b, h.LeaseID)
	b = binary.AppendUvarint(b, h.Epoch)
	b = binary.AppendUvarint(b, uint64(h.LeaseTTL/time.Millisecond))
	b = appendString(b, string(h.WorkerInstanceID))
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote; any other input gives a
// malformed_handle validation error and leaves h unchanged.
func (h *Handle) UnmarshalBinary(data []byte) error {
	d, err := DecodeHandle(data)
	if err != nil {
		return err
	}
	*h = d
	return nil
}

// DecodeHandle decodes an encoded handle.
func DecodeHandle(data []byte) (Handle, error) {
	bad := func(why string) (Handle, error) {
		return Handle{}, validationf(CodeMalformedHandle, "handle: %s", why)
	}
	if len(data) > maxEncodedHandle {
		return bad("too long")
	}
	if len(data) < handleHeaderBytes || data[0] != handleMagic0 || data[1] != handleMagic1 {
		return bad("not an encoded handle")
	}
	if data[2] != handleVersion {
		return bad("unknown encoding version")
	}
	r := handleReader{b: data[handleHeaderBytes:]}
	h := Handle{Backend: BackendTag(data[3]), Kind: HandleKind(data[4])}
	h.ExecutionID = ExecutionID(r.str())
	h.Lane = LaneID(r.str())
	idx := r.uvarint()
	h.AttemptID = r.str()
	h.LeaseID = r.str()
	h.Epoch = r.uvarint()
	ttl := r.uvarint()
	h.WorkerInstanceID = WorkerInstanceID(r.str())
	if r.bad {
		return bad("truncated or oversize field")
	}
	if len(r.b) != 0 {
		return bad("trailing bytes")
	}
	if idx > uint64(^uint32(0)) {
		return bad("attempt index out of range")
	}
	if ttl == 0 || ttl > uint64(maxHandleLeaseTTL/time.Millisecond) {
		return bad("lease ttl out of range")
	}
	h.AttemptIndex = AttemptIndex(idx)
	h.LeaseTTL = time.Duration(ttl) * time.Millisecond
	if err := h.Validate(); err != nil {
		return Handle{}, err
	}
	return h, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type handleReader struct {
	b   []byte
	bad bool
}

func (r *handleReader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || n != uvarintLen(v) { // only the minimal encoding is valid
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *handleReader) str() string {
	n := r.uvarint()
	if r.bad || n > maxHandleString || n > uint64(len(r.b)) {
		r.bad = true
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
