package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"
)

// Attempt streams: output a running attempt publishes while it runs
// (frames), read and tailed by anyone who knows the execution. One stream
// per attempt; only the lease holder appends, so a stream closes when its
// attempt ends.

// Frame is one entry of an attempt stream.
type Frame struct {
	// Type names the frame for readers ("token", "log", "progress"…): a
	// name as lanes are (no space, comma or brace).
	Type    string
	Payload []byte
	// CorrelationID, when set, ties frames together (a name too).
	CorrelationID string
}

// StreamMode says how frames are kept.
type StreamMode string

// Stream modes.
const (
	// StreamDurable keeps the last MaxLen frames (about) for as long as
	// the execution is kept.
	StreamDurable StreamMode = "durable"
	// StreamLive keeps few frames, for watchers only: the last MaxLen
	// (default LiveStreamMaxLenDefault), and the whole stream expires TTL
	// after its last append.
	StreamLive StreamMode = "live"
	// StreamSummary merges each frame's payload (a JSON Merge Patch, RFC
	// 7386) into the attempt's summary document, and keeps the frames as
	// durable ones.
	StreamSummary StreamMode = "summary"
)

// Stream limits and defaults.
const (
	MaxFrameBytes           = 64 << 10 // payload of one frame
	MaxFramesPerAppend      = 256
	StreamMaxLenDefault     = 10000 // durable and summary frames kept (about)
	LiveStreamMaxLenDefault = 1000
	LiveStreamTTLDefault    = time.Hour
	MaxStreamRead           = 10000 // entries one read returns at most
	MaxTailBlock            = 30 * time.Second
	MaxSummaryBytes         = 256 << 10
)

// Stream error codes.
const (
	CodeSummaryConflict     = "summary_conflict"
	CodeInvalidSummaryPatch = "invalid_summary_patch"
)

const (
	summaryPatchNestingLimit = 64
	streamCursorMaxLen       = 48
)

// AppendArgs is one append of frames.
type AppendArgs struct {
	Mode   StreamMode // default StreamDurable
	Frames []Frame    // 1..MaxFramesPerAppend
	// MaxLen is how many frames the stream keeps (about); default
	// StreamMaxLenDefault, or LiveStreamMaxLenDefault for StreamLive.
	MaxLen int
	// TTL is a live stream's expiry after its last append; default
	// LiveStreamTTLDefault. Ignored by the other modes.
	TTL time.Duration
	// Summary is the summary document after this append (StreamSummary:
	// the caller merges, as the attempt's only writer), and SummaryVersion
	// the version it was merged onto: a stored version that differs is
	// summary_conflict, nothing written.
	Summary        []byte
	SummaryVersion uint64
	// LastIDOnly asks for the last frame's entry id alone (a shorter reply:
	// Task.Emit reads none).
	LastIDOnly bool
}

// AppendResult reports an append.
type AppendResult struct {
	// EntryIDs holds one stream cursor per frame, in order (with
	// LastIDOnly, the last frame's alone).
	EntryIDs       []string
	SummaryVersion uint64 // the summary's version after the append (StreamSummary)
}

// StreamEntry is a frame as read back.
type StreamEntry struct {
	// ID is the entry's cursor: reads after it start past it.
	ID string
	Frame
	// At is when the server appended it (the entry id's time).
	At time.Time
}

// StreamState says whether an attempt's stream can still grow.
type StreamState struct {
	// Closed: the attempt ended (a later attempt exists, or the execution
	// is terminal), so no frame can be appended any more.
	Closed      bool
	ClosedAt    time.Time
	CloseReason string // the attempt's outcome: completed, failed, retried, interrupted, cancelled, expired
}

// StreamPage is one read of a stream.
type StreamPage struct {
	Entries []StreamEntry
	StreamState
}

// Summary is an attempt's summary document.
type Summary struct {
	Doc     []byte // a JSON object; "{}" before the first summary frame
	Version uint64
}

// Streamer appends to and reads attempt streams (RoleStreams).
type Streamer interface {
	// AppendFrames appends to h's attempt stream. Fenced: once the attempt
	// ended (its stream closed) the fence errors refuse it.
	AppendFrames(ctx context.Context, h Handle, args AppendArgs) (AppendResult, error)
	// ReadStream returns up to count (default 100, at most MaxStreamRead)
	// entries after cursor ("" = from the start), and the stream's state.
	ReadStream(ctx context.Context, id ExecutionID, attempt AttemptIndex, after string, count int) (StreamPage, error)
	// TailStream waits up to block (default 5s, at most MaxTailBlock) for
	// entries after cursor and returns them (none when the wait ran out).
	// The wait holds a connection of its own, not the shared pipeline's.
	TailStream(ctx context.Context, id ExecutionID, attempt AttemptIndex, after string, block time.Duration, count int) ([]StreamEntry, error)
	// ReadSummary returns the attempt's summary document.
	ReadSummary(ctx context.Context, id ExecutionID, attempt AttemptIndex) (Summary, error)
}

// Resolve checks an append's arguments and fills defaults.
func (a AppendArgs) Resolve() (AppendArgs, error) {
	if a.Mode == "" {
		a.Mode = StreamDurable
	}
	switch a.Mode {
	case StreamDurable, StreamSummary, StreamLive:
	default:
		return a, validationf(CodeInvalidInput, "unknown stream mode %q", truncate(string(a.Mode)))
	}
	if len(a.Frames) == 0 || len(a.Frames) > MaxFramesPerAppend {
		return a, validationf(CodeInvalidInput, "%d frames: 1..%d per append", len(a.Frames), MaxFramesPerAppend)
	}
	for _, f := range a.Frames {
		if err := validateName("frame type", f.Type); err != nil {
			return a, err
		}
		if f.CorrelationID != "" {
			if err := validateName("correlation id", f.CorrelationID); err != nil {
				return a, err
			}
		}
		if len(f.Payload) > MaxFrameBytes {
			return a, validationf(CodePayloadTooLarge, "frame payload of %d bytes, over the %d limit", len(f.Payload), MaxFrameBytes)
		}
	}
	if a.MaxLen < 0 || a.TTL < 0 {
		return a, validationf(CodeInvalidInput, "negative MaxLen or TTL")
	}
	if a.MaxLen == 0 {
		a.MaxLen = StreamMaxLenDefault
		if a.Mode == StreamLive {
			a.MaxLen = LiveStreamMaxLenDefault
		}
	}
	if a.Mode == StreamLive && a.TTL == 0 {
		a.TTL = LiveStreamTTLDefault
	}
	if a.Mode == StreamSummary {
		if len(a.Summary) > MaxSummaryBytes {
			return a, validationf(CodePayloadTooLarge, "summary of %d bytes, over the %d limit", len(a.Summary), MaxSummaryBytes)
		}
		if !json.Valid(a.Summary) || !bytes.HasPrefix(bytes.TrimSpace(a.Summary), []byte("{")) {
			return a, validationf(CodeInvalidSummaryPatch, "the summary is not a JSON object")
		}
	}
	return a, nil
}

// CheckStreamCursor checks a stream cursor ("" or an entry id "<ms>-<seq>").
func CheckStreamCursor(c string) error {
	if c == "" {
		return nil
	}
	ms, seq, ok := strings.Cut(c, "-")
	if !ok || len(c) > streamCursorMaxLen || !digits(ms) || !digits(seq) {
		return validationf(CodeInvalidInput, "malformed stream cursor %q", truncate(c))
	}
	return nil
}

func digits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// MergePatch applies JSON Merge Patch patch (RFC 7386) to doc, both JSON
// (doc "" or null counts as {}), and returns the result, which must be an
// object. A patch that is not JSON is invalid_summary_patch.
func MergePatch(doc, patch []byte) ([]byte, error) {
	var d, p any
	if len(bytes.TrimSpace(doc)) > 0 {
		if err := decodeJSON(doc, &d); err != nil {
			return nil, validationf(CodeInvalidSummaryPatch, "summary document: %v", err)
		}
	}
	if err := decodeJSON(patch, &p); err != nil {
		return nil, validationf(CodeInvalidSummaryPatch, "patch: %v", err)
	}
	out := mergeValue(d, p, 0)
	if _, ok := out.(map[string]any); !ok {
		return nil, validationf(CodeInvalidSummaryPatch, "the patch leaves the summary a non-object")
	}
	return json.Marshal(out)
}

func decodeJSON(b []byte, v *any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers pass through unchanged
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return validationf(CodeInvalidSummaryPatch, "trailing data")
	}
	return nil
}

func mergeValue(target, patch any, depth int) any {
	p, ok := patch.(map[string]any)
	if !ok || depth > summaryPatchNestingLimit {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergeValue(t[k], v, depth+1)
	}
	return t
}
