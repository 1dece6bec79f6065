package sdk

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

var (
	_ encoding.BinaryMarshaler   = Handle{}
	_ encoding.BinaryUnmarshaler = (*Handle)(nil)
)

const (
	testLeaseID   = "7d3f1a2b-9c4e-4f5a-8b6c-1d2e3f4a5b6c"
	testAttemptID = "c1d2e3f4-a5b6-4c7d-9e8f-0a1b2c3d4e5f"
)

func validHandle() Handle {
	return Handle{
		Backend:          BackendValkey,
		Kind:             HandleFresh,
		ExecutionID:      ExecutionID("{p:17}:" + testUUID),
		Lane:             "default",
		AttemptIndex:     2,
		AttemptID:        testAttemptID,
		LeaseID:          testLeaseID,
		Epoch:            5,
		LeaseTTL:         30 * time.Second,
		WorkerInstanceID: "worker-1",
	}
}

func TestHandleRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Handle)
	}{
		{"fresh", func(*Handle) {}},
		{"resumed", func(h *Handle) { h.Kind = HandleResumed }},
		{"reclaimed", func(h *Handle) { h.Kind = HandleReclaimed }},
		{"no worker instance", func(h *Handle) { h.WorkerInstanceID = "" }},
		{"partition 0", func(h *Handle) { h.ExecutionID = "{p:0}:" + testUUID }},
		{"max attempt index", func(h *Handle) { h.AttemptIndex = AttemptIndex(^uint32(0)) }},
		{"attempt 0", func(h *Handle) { h.AttemptIndex = 0 }},
		{"epoch 1", func(h *Handle) { h.Epoch = 1 }},
		{"max epoch", func(h *Handle) { h.Epoch = ^uint64(0) }},
		{"1ms ttl", func(h *Handle) { h.LeaseTTL = time.Millisecond }},
		{"365 day ttl", func(h *Handle) { h.LeaseTTL = 365 * 24 * time.Hour }},
		{"long lane", func(h *Handle) { h.Lane = LaneID(strings.Repeat("l", MaxIDLength)) }},
		{"other backend tag", func(h *Handle) { h.Backend = 200 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := validHandle()
			tt.mutate(&h)
			if err := h.Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			b, err := h.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary() = %v", err)
			}
			if !bytes.HasPrefix(b, []byte{'F', 'H', 1, byte(h.Backend), byte(h.Kind)}) {
				t.Fatalf("encoding starts % x, want the FH v1 header", b[:5])
			}
			got, err := DecodeHandle(b)
			if err != nil {
				t.Fatalf("DecodeHandle() = %v", err)
			}
			if got != h {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, h)
			}
			var u Handle
			if err := u.UnmarshalBinary(b); err != nil || u != h {
				t.Fatalf("UnmarshalBinary() = %v, %+v", err, u)
			}
			again, _ := got.MarshalBinary()
			if !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n% x\n% x", again, b)
			}
			if f := h.Fence(); f != (LeaseFence{LeaseID: h.LeaseID, Epoch: h.Epoch, AttemptID: h.AttemptID}) {
				t.Fatalf("Fence() = %+v", f)
			}
		})
	}
}

func TestHandleValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Handle)
	}{
		{"zero handle", func(h *Handle) { *h = Handle{} }},
		{"no backend", func(h *Handle) { h.Backend = 0 }},
		{"kind 0", func(h *Handle) { h.Kind = 0 }},
		{"kind 4", func(h *Handle) { h.Kind = 4 }},
		{"empty execution id", func(h *Handle) { h.ExecutionID = "" }},
		{"malformed execution id", func(h *Handle) { h.ExecutionID = "{p:1}:nope" }},
		{"empty lane", func(h *Handle) { h.Lane = "" }},
		{"lane with brace", func(h *Handle) { h.Lane = "a{b" }},
		{"empty lease id", func(h *Handle) { h.LeaseID = "" }},
		{"bad lease id", func(h *Handle) { h.LeaseID = "lease-1" }},
		{"uppercase lease id", func(h *Handle) { h.LeaseID = strings.ToUpper(testLeaseID) }},
		{"empty attempt id", func(h *Handle) { h.AttemptID = "" }},
		{"bad attempt id", func(h *Handle) { h.AttemptID = testAttemptID + "x" }},
		{"epoch 0", func(h *Handle) { h.Epoch = 0 }},
		{"ttl 0", func(h *Handle) { h.LeaseTTL = 0 }},
		{"negative ttl", func(h *Handle) { h.LeaseTTL = -time.Second }},
		{"bad worker instance", func(h *Handle) { h.WorkerInstanceID = "w 1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := validHandle()
			tt.mutate(&h)
			requireValidation(t, h.Validate(), CodeMalformedHandle)
			b, err := h.MarshalBinary()
			if b != nil {
				t.Fatalf("MarshalBinary() of an invalid handle returned %d bytes", len(b))
			}
			requireValidation(t, err, CodeMalformedHandle)
		})
	}
}

// TestHandleTTLEncoding pins what the codec does with lease TTLs that are not
// a whole number of milliseconds in (0, 365d]: Validate accepts them, but the
// encoding carries whole milliseconds only.
func TestHandleTTLEncoding(t *testing.T) {
	t.Run("sub-millisecond part is dropped", func(t *testing.T) {
		h := validHandle()
		h.LeaseTTL = 1500 * time.Microsecond
		b, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeHandle(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.LeaseTTL != time.Millisecond {
			t.Fatalf("LeaseTTL 1.5ms decoded as %v", got.LeaseTTL)
		}
	})
	t.Run("ttl outside the codec range", func(t *testing.T) {
		for _, ttl := range []time.Duration{time.Microsecond, 366 * 24 * time.Hour} {
			h := validHandle()
			h.LeaseTTL = ttl
			b, err := h.MarshalBinary()
			if err != nil {
				continue // rejecting at marshal time is a valid fix
			}
			if _, err := DecodeHandle(b); err != nil {
				t.Errorf("LeaseTTL %v: MarshalBinary succeeded but DecodeHandle failed: %v", ttl, err)
			}
		}
	})
}

func mustMarshal(t testing.TB, h Handle) []byte {
	t.Helper()
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	return b
}

func TestDecodeHandleRejects(t *testing.T) {
	good := mustMarshal(t, validHandle())
	with := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	// encode builds an encoding field by field, bypassing MarshalBinary's
	// validation, to reach DecodeHandle's own checks.
	encode := func(backend, kind byte, eid, lane string, idx uint64, att, lease string, epoch, ttlMS uint64, wi string) []byte {
		b := []byte{'F', 'H', 1, backend, kind}
		b = appendString(b, eid)
		b = appendString(b, lane)
		b = binary.AppendUvarint(b, idx)
		b = appendString(b, att)
		b = appendString(b, lease)
		b = binary.AppendUvarint(b, epoch)
		b = binary.AppendUvarint(b, ttlMS)
		return appendString(b, wi)
	}
	eid := "{p:17}:" + testUUID
	// A non-minimal uvarint (2 as 0x82 0x00) for the attempt index.
	nonMinimal := []byte{'F', 'H', 1, 1, 1}
	nonMinimal = appendString(nonMinimal, eid)
	nonMinimal = appendString(nonMinimal, "l")
	nonMinimal = append(nonMinimal, 0x82, 0x00)
	nonMinimal = appendString(nonMinimal, testAttemptID)
	nonMinimal = appendString(nonMinimal, testLeaseID)
	nonMinimal = binary.AppendUvarint(nonMinimal, 1)
	nonMinimal = binary.AppendUvarint(nonMinimal, 1000)
	nonMinimal = appendString(nonMinimal, "")
	tests := []struct {
		name     string
		in       []byte
		knownBug string
	}{
		{"non-minimal varint", nonMinimal,
			""},
		{"nil", nil, ""},
		{"empty", []byte{}, ""},
		{"magic only", []byte("FH"), ""},
		{"header only", good[:5], ""},
		{"wrong magic", with(func(b []byte) []byte { b[0] = 'X'; return b }), ""},
		{"wrong magic 2", with(func(b []byte) []byte { b[1] = 'h'; return b }), ""},
		{"version 0", with(func(b []byte) []byte { b[2] = 0; return b }), ""},
		{"version 2", with(func(b []byte) []byte { b[2] = 2; return b }), ""},
		{"backend 0", with(func(b []byte) []byte { b[3] = 0; return b }), ""},
		{"kind 0", with(func(b []byte) []byte { b[4] = 0; return b }), ""},
		{"kind 9", with(func(b []byte) []byte { b[4] = 9; return b }), ""},
		{"trailing byte", append(append([]byte{}, good...), 0), ""},
		{"last byte dropped", good[:len(good)-1], ""},
		{"too long", append(append([]byte{}, good...), make([]byte, maxEncodedHandle)...), ""},
		{"huge string length", append([]byte{'F', 'H', 1, 1, 1}, binary.AppendUvarint(nil, 1<<62)...), ""},
		{"oversize string", encode(1, 1, strings.Repeat("a", maxHandleString+1), "l", 0, testAttemptID, testLeaseID, 1, 1000, ""), ""},
		{"varint overflow", append([]byte{'F', 'H', 1, 1, 1}, bytes.Repeat([]byte{0xff}, 11)...), ""},
		{"attempt index over uint32", encode(1, 1, eid, "l", 1<<32, testAttemptID, testLeaseID, 1, 1000, ""), ""},
		{"ttl 0", encode(1, 1, eid, "l", 0, testAttemptID, testLeaseID, 1, 0, ""), ""},
		{"ttl over a year", encode(1, 1, eid, "l", 0, testAttemptID, testLeaseID, 1, uint64(366*24*time.Hour/time.Millisecond), ""), ""},
		{"epoch 0", encode(1, 1, eid, "l", 0, testAttemptID, testLeaseID, 0, 1000, ""), ""},
		{"bad execution id", encode(1, 1, "{p:17}:x", "l", 0, testAttemptID, testLeaseID, 1, 1000, ""), ""},
		{"bad lane", encode(1, 1, eid, "", 0, testAttemptID, testLeaseID, 1, 1000, ""), ""},
		{"bad lease id", encode(1, 1, eid, "l", 0, testAttemptID, "x", 1, 1000, ""), ""},
		{"bad attempt id", encode(1, 1, eid, "l", 0, "", testLeaseID, 1, 1000, ""), ""},
		{"bad worker instance", encode(1, 1, eid, "l", 0, testAttemptID, testLeaseID, 1, 1000, "a,b"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.knownBug != "" {
				t.Skip("known bug: " + tt.knownBug)
			}
			h, err := DecodeHandle(tt.in)
			if h != (Handle{}) {
				t.Fatalf("DecodeHandle returned %+v with its error", h)
			}
			requireValidation(t, err, CodeMalformedHandle)

			// UnmarshalBinary leaves the receiver unchanged.
			before := validHandle()
			before.Epoch = 77
			u := before
			requireValidation(t, u.UnmarshalBinary(tt.in), CodeMalformedHandle)
			if u != before {
				t.Fatalf("UnmarshalBinary modified the handle on error: %+v", u)
			}
		})
	}
	// Every proper prefix of a valid encoding is rejected.
	for i := range len(good) {
		if _, err := DecodeHandle(good[:i]); err == nil {
			t.Fatalf("DecodeHandle accepted a %d of %d byte prefix", i, len(good))
		}
	}
}

// FuzzDecodeHandle checks that DecodeHandle never panics and that whatever it
// accepts is a valid handle whose encoding is the input, byte for byte (one
// handle, one encoding: no aliases that compare unequal as bytes).
func FuzzDecodeHandle(f *testing.F) {
	seeds := []Handle{validHandle()}
	for _, mutate := range []func(*Handle){
		func(h *Handle) { h.Kind = HandleResumed; h.WorkerInstanceID = "" },
		func(h *Handle) { h.Kind = HandleReclaimed; h.Epoch = ^uint64(0); h.AttemptIndex = 1<<32 - 1 },
		func(h *Handle) { h.ExecutionID = "{p:999999}:" + testUUID; h.LeaseTTL = time.Millisecond },
		func(h *Handle) { h.Lane = LaneID(strings.Repeat("z", MaxIDLength)); h.LeaseTTL = 365 * 24 * time.Hour },
	} {
		h := validHandle()
		mutate(&h)
		seeds = append(seeds, h)
	}
	for _, h := range seeds {
		b := mustMarshal(f, h)
		f.Add(b)
		for _, n := range []int{0, 1, 2, 4, 5, 6, len(b) / 2, len(b) - 1} {
			f.Add(b[:n])
		}
		f.Add(append(append([]byte{}, b...), 0))
	}
	f.Add([]byte("FH\x01\x01\x01"))
	f.Add([]byte("not a handle"))

	f.Fuzz(func(t *testing.T, data []byte) {
		in := append([]byte{}, data...)
		h, err := DecodeHandle(data)
		if !bytes.Equal(in, data) {
			t.Fatalf("DecodeHandle modified its input")
		}
		if err != nil {
			if h != (Handle{}) {
				t.Fatalf("DecodeHandle returned %+v with error %v", h, err)
			}
			if CodeOf(err) != CodeMalformedHandle || KindOf(err) != KindValidation {
				t.Fatalf("DecodeHandle error %v is not a malformed_handle validation error", err)
			}
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("DecodeHandle accepted %q, but Validate fails: %v", data, err)
		}
		b, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("DecodeHandle accepted %q, but MarshalBinary fails: %v", data, err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("re-encoding differs from the accepted input:\n in % x\nout % x", data, b)
		}
	})
}

// CallPartition refuses what Validate refuses in everything that becomes a
// key name or a number, and returns the id's partition; the lease and
// attempt ids get a shape check only (the fenced call compares them).
func TestCallPartition(t *testing.T) {
	h := Handle{Backend: BackendValkey, Kind: HandleFresh, ExecutionID: NewExecutionID(7), Lane: "l",
		AttemptID: newUUID(), LeaseID: newUUID(), Epoch: 1, LeaseTTL: time.Second}
	if p, err := h.CallPartition(); err != nil || p != 7 {
		t.Fatalf("CallPartition = %d, %v; want 7", p, err)
	}
	bad := []func(*Handle){
		func(h *Handle) { h.Backend = 0 },
		func(h *Handle) { h.Kind = 9 },
		func(h *Handle) { h.ExecutionID = "{p:7}:not-a-uuid" },
		func(h *Handle) { h.ExecutionID = "" },
		func(h *Handle) { h.Lane = "" },
		func(h *Handle) { h.Lane = "a b" },
		func(h *Handle) { h.LeaseID = "" },
		func(h *Handle) { h.AttemptID = "not-an-attempt" },
		func(h *Handle) { h.Epoch = 0 },
		func(h *Handle) { h.LeaseTTL = 0 },
		func(h *Handle) { h.LeaseTTL = maxHandleLeaseTTL + time.Millisecond },
	}
	for i, f := range bad {
		x := h
		f(&x)
		if _, err := x.CallPartition(); CodeOf(err) != CodeMalformedHandle {
			t.Errorf("case %d: %v, want malformed_handle", i, err)
		}
		if x.Validate() == nil {
			t.Errorf("case %d: Validate accepts what CallPartition refuses", i)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = h.CallPartition() }); n != 0 {
		t.Fatalf("CallPartition allocates %.0f times", n)
	}
}
