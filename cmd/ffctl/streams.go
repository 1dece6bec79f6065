package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// frameJSON is one frame of `ffctl stream tail -o json` (one per line).
type frameJSON struct {
	Cursor        string    `json:"cursor"`
	At            time.Time `json:"at,omitzero"`
	Type          string    `json:"type"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	// Payload is the frame's payload when it is valid UTF-8, else
	// PayloadBase64 holds it.
	Payload       string `json:"payload,omitempty"`
	PayloadBase64 string `json:"payload_base64,omitempty"`
}

func runTail(ctx context.Context, e *env) error {
	id, err := parseID(e)
	if err != nil {
		return err
	}
	if e.attempt < -1 {
		return usagef("--attempt %d: want 0 or more", e.attempt)
	}
	if len(e.after) > 64 {
		return usagef("--after: not a frame cursor")
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	s := e.roles.Streamer
	if s == nil {
		return sdk.Unavailable("tail_stream")
	}
	attempt := sdk.AttemptIndex(e.attempt)
	cur, err := e.b.ReadCurrentAttemptIndex(ctx, id) // also: not found
	if err != nil {
		return err
	}
	if e.attempt < 0 {
		attempt = cur
	} else if attempt > cur {
		return usagef("--attempt %d: the execution's attempts are 0..%d", e.attempt, cur)
	}
	var once sync.Once
	emit := func(en sdk.StreamEntry) error {
		if e.json() {
			f := frameJSON{Cursor: en.ID, At: en.At, Type: en.Type, CorrelationID: en.CorrelationID}
			f.Payload, f.PayloadBase64 = payloadJSON(en.Payload)
			b, err := json.Marshal(f)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%s\n", b)
			return err
		}
		once.Do(func() { fmt.Fprintf(e.stdout, "%-24s  %-12s  %-12s  %s\n", "AT", "TYPE", "CORRELATION", "PAYLOAD") })
		_, err := fmt.Fprintf(e.stdout, "%-24s  %-12s  %-12s  %s\n", when(en.At), cell(en.Type), cell(en.CorrelationID), payloadText(en.Payload))
		return err
	}
	if e.noFollow {
		after := e.after
		for {
			page, err := s.ReadStream(ctx, id, attempt, after, sdk.MaxStreamRead)
			if err != nil {
				return err
			}
			for _, en := range page.Entries {
				if err := emit(en); err != nil {
					return err
				}
				after = en.ID
			}
			if len(page.Entries) < sdk.MaxStreamRead {
				return nil
			}
		}
	}
	for en, err := range e.client.Tail(ctx, id, attempt, e.after) {
		if err != nil {
			return err
		}
		if err := emit(en); err != nil {
			return err
		}
	}
	return nil
}
