package sdk

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxIDLength bounds every caller-supplied identifier (lane, worker, kind, …).
const MaxIDLength = 256

// ExecutionID names one execution. Its text form is "{p:N}:<uuid>": the partition
// tag comes first so every key of the execution hashes to the partition's cluster
// slot, and the partition is read back from the id, never recomputed.
type ExecutionID string

// LaneID names a queue of executions.
type LaneID string

// FlowID names a flow (a DAG of executions).
type FlowID string

// WorkerID is the logical name of a worker deployment ("billing-workers").
type WorkerID string

// WorkerInstanceID names one running worker process; it must be unique at a time.
type WorkerInstanceID string

// AttemptIndex counts attempts of one execution from 0.
type AttemptIndex uint32

// NewExecutionID mints a fresh id on the given partition. Its uuid is
// time-ordered (version 7), so ids minted by one process sort in the order
// they were minted: an eligible set orders executions of the same priority
// created in the same millisecond by id, and that keeps them first in,
// first out.
func NewExecutionID(partition int) ExecutionID {
	tag := PartitionTag(partition)
	var u [36]byte
	var id strings.Builder // one allocation: the id's
	id.Grow(len(tag) + 1 + len(u))
	id.WriteString(tag)
	id.WriteByte(':')
	id.Write(appendUUID(u[:0], timeUUIDBytes()))
	return ExecutionID(id.String())
}

// uuidPart returns what follows the id's partition tag ("" when there is
// no tag).
func (id ExecutionID) uuidPart() string {
	s := string(id)
	if i := strings.Index(s, "}:"); i >= 0 {
		return s[i+2:]
	}
	return ""
}

// PartitionTag returns the cluster hash tag of a partition, "{p:N}".
func PartitionTag(partition int) string {
	if partition >= 0 && partition < len(partitionTags) {
		return partitionTags[partition]
	}
	return "{p:" + strconv.Itoa(partition) + "}"
}

// partitionTags are the tags of the first partitions, made once: every
// call builds its keys from one.
var partitionTags = func() (tags [1024]string) {
	for p := range tags {
		tags[p] = "{p:" + strconv.Itoa(p) + "}"
	}
	return tags
}()

// ParseExecutionID validates s and returns it as an ExecutionID.
func ParseExecutionID(s string) (ExecutionID, error) {
	id := ExecutionID(s)
	if _, err := id.parse(); err != nil {
		return "", err
	}
	return id, nil
}

// Partition returns the partition the id was minted on, or an error for a
// malformed id.
func (id ExecutionID) Partition() (int, error) { return id.parse() }

// Validate reports a validation error for a malformed id.
func (id ExecutionID) Validate() error {
	_, err := id.parse()
	return err
}

// Tag returns the "{p:N}" prefix of a valid id ("" for a malformed one).
func (id ExecutionID) Tag() string {
	if _, err := id.parse(); err != nil {
		return ""
	}
	i := strings.IndexByte(string(id), '}')
	return string(id[:i+1])
}

func (id ExecutionID) String() string { return string(id) }

func (id ExecutionID) parse() (int, error) {
	s := string(id)
	if s == "" {
		return 0, validationf(CodeInvalidInput, "execution id is empty")
	}
	if !strings.HasPrefix(s, "{p:") {
		return 0, validationf(CodeInvalidInput, "execution id %q: missing {p:N} partition tag", truncate(s))
	}
	end := strings.Index(s, "}:")
	if end < 4 || end > 3+6 {
		return 0, validationf(CodeInvalidInput, "execution id %q: malformed partition tag", truncate(s))
	}
	for i := 3; i < end; i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, validationf(CodeInvalidInput, "execution id %q: malformed partition number", truncate(s))
		}
	}
	p, err := strconv.Atoi(s[3:end])
	if err != nil || (end-3 > 1 && s[3] == '0') {
		return 0, validationf(CodeInvalidInput, "execution id %q: malformed partition number", truncate(s))
	}
	if !isUUID(s[end+2:]) {
		return 0, validationf(CodeInvalidInput, "execution id %q: suffix is not a lowercase uuid", truncate(s))
	}
	return p, nil
}

// Validate checks a lane name: 1..MaxIDLength bytes of printable ASCII without
// spaces, commas or braces (braces would change the cluster hash tag of keys).
func (l LaneID) Validate() error { return validateName("lane", string(l)) }

// NewFlowID mints a fresh flow id on the given partition: "{p:N}:<uuid>",
// shaped like an execution id, because a flow and all its members live on
// its partition (one cluster slot).
func NewFlowID(partition int) FlowID { return FlowID(NewExecutionID(partition)) }

// Validate reports a validation error for a malformed flow id.
func (f FlowID) Validate() error {
	_, err := f.Partition()
	return err
}

// Partition returns the partition the flow lives on, or an error for a
// malformed id.
func (f FlowID) Partition() (int, error) {
	p, err := ExecutionID(f).parse()
	if err != nil {
		return 0, validationf(CodeInvalidInput, "flow id %q: malformed (want {p:N}:<uuid>)", truncate(string(f)))
	}
	return p, nil
}

// NewMemberID mints an execution id on flow f's partition, as every
// member of f must have; "" for a malformed flow id.
func (f FlowID) NewMemberID() ExecutionID {
	p, err := f.Partition()
	if err != nil {
		return ""
	}
	return NewExecutionID(p)
}

// Validate checks a worker id like a lane name.
func (w WorkerID) Validate() error { return validateName("worker id", string(w)) }

// Validate checks a worker instance id like a lane name.
func (w WorkerInstanceID) Validate() error { return validateName("worker instance id", string(w)) }

// ValidateKind checks an execution kind (the handler dispatch key).
func ValidateKind(kind string) error { return validateName("execution kind", kind) }

func validateName(what, s string) error {
	if s == "" {
		return validationf(CodeInvalidInput, "%s is empty", what)
	}
	if len(s) > MaxIDLength {
		return validationf(CodeInvalidInput, "%s is %d bytes, over the %d byte limit", what, len(s), MaxIDLength)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ',' || c == '{' || c == '}' {
			return validationf(CodeInvalidInput, "%s %q: byte %d (0x%02x) is not allowed", what, truncate(s), i, c)
		}
	}
	return nil
}

func isUUID(s string) bool {
	if !uuidShape(s) {
		return false
	}
	return lowerHex(s[:8]) && lowerHex(s[9:13]) && lowerHex(s[14:18]) && lowerHex(s[19:23]) && lowerHex(s[24:])
}

// uuidShape reports whether s has a uuid's length and dashes.
func uuidShape(s string) bool {
	return len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-'
}

// lowerHex reports whether s is all lowercase hex digits: a table lookup
// per byte, not a range test (every call on a lease checks an id).
func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHex[s[i]] {
			return false
		}
	}
	return true
}

var isLowerHex = func() (t [256]bool) {
	for _, c := range "0123456789abcdef" {
		t[c] = true
	}
	return t
}()

// newUUID returns a random (version 4) uuid in its canonical lowercase form.
func newUUID() string {
	var b [16]byte
	randomBytes(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// timeUUIDBytes returns the bytes of a time-ordered (version 7) uuid: 48
// bits of unix milliseconds, then 12 bits that count up within the
// millisecond in this process, then 62 random bits. Their text sorts as
// they were minted here, and by time across processes (to a millisecond),
// so ties in an eligible set's score (same priority, same millisecond)
// keep creation order.
func timeUUIDBytes() [16]byte {
	var b [16]byte
	randomBytes(b[:])
	ms, seq := uuidClock.next()
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = 0x70 | byte(seq>>8)&0x0f
	b[7] = byte(seq)
	b[8] = b[8]&0x3f | 0x80
	return b
}

// uuidClock hands out (millisecond, sequence) pairs that strictly increase:
// within a millisecond the sequence counts up; when it runs out (4096 ids
// in one millisecond) the millisecond moves on early.
var uuidClock timeSeq

type timeSeq struct {
	mu      sync.Mutex
	lastMS  int64
	lastSeq int64
}

func (c *timeSeq) next() (ms, seq int64) {
	now := time.Now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case now > c.lastMS:
		c.lastMS, c.lastSeq = now, 0
	case c.lastSeq < 0xfff:
		c.lastSeq++
	default:
		c.lastMS, c.lastSeq = c.lastMS+1, 0
	}
	return c.lastMS, c.lastSeq
}

func randomBytes(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // never happens on Linux
	}
}

func formatUUID(b [16]byte) string {
	return string(appendUUID(make([]byte, 0, 36), b))
}

// appendUUID appends b's text form (8-4-4-4-12 hex digits) to dst.
func appendUUID(dst []byte, b [16]byte) []byte {
	const hex = "0123456789abcdef"
	for i, v := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[v>>4], hex[v&0x0f])
	}
	return dst
}

// NewToken returns a random uuid, used for lease ids and attempt ids.
func NewToken() string { return newUUID() }

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
