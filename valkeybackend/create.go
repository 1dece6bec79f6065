package valkeybackend

import (
	"context"
	"hash/fnv"
	"math"
	"strconv"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Create defaults.
const (
	DedupTTLDefault       = 24 * time.Hour
	MaxTagsDefault        = 256
	backoffInitialDefault = time.Second
	backoffMaxDefault     = 60 * time.Second
	backoffMultDefault    = 2.0
	maxIdempotencyKeyLen  = 512
)

// CreateExecution validates args, picks the partition and runs ff_create.
// A repeated idempotency key returns the first id with Duplicate set.
func (b *Backend) CreateExecution(ctx context.Context, a sdk.CreateExecutionArgs) (sdk.CreateExecutionResult, error) {
	const op = "create_execution"
	keys, args, err := b.createCall(a)
	if err != nil {
		return sdk.CreateExecutionResult{}, opError(op, err)
	}
	cmd := b.fcall("ff_create", keys, args...)
	var r reply
	if _, known := b.lanesSeen.Load(a.Lane); known {
		r, err = decode(op, b.client.Do(ctx, cmd))
	} else {
		res := b.client.DoMulti(ctx, b.client.B().Sadd().Key(lanesKey).Member(string(a.Lane)).Build(), cmd)
		if err := res[0].Error(); err != nil {
			return sdk.CreateExecutionResult{}, backendError(op, err)
		}
		r, err = decode(op, res[1])
		if err == nil {
			b.lanesSeen.Store(a.Lane, struct{}{})
		}
	}
	if err != nil {
		return sdk.CreateExecutionResult{}, err
	}
	if r.status == "DUPLICATE" {
		return sdk.CreateExecutionResult{ID: sdk.ExecutionID(r.field(0)), Duplicate: true}, nil
	}
	return sdk.CreateExecutionResult{ID: sdk.ExecutionID(r.field(0)), State: sdk.PublicState(r.field(1))}, nil
}

// createCall validates a create and builds ff_create's KEYS and ARGV. Nothing
// reaches Valkey when it returns an error.
func (b *Backend) createCall(a sdk.CreateExecutionArgs) ([]string, []string, error) {
	if err := a.Lane.Validate(); err != nil {
		return nil, nil, err
	}
	if err := sdk.ValidateKind(a.Kind); err != nil {
		return nil, nil, err
	}
	if len(a.Payload) > b.opts.MaxPayloadBytes {
		return nil, nil, sdk.Validationf(sdk.CodePayloadTooLarge, "payload is %d bytes, over the %d byte limit", len(a.Payload), b.opts.MaxPayloadBytes)
	}
	if a.Priority < sdk.MinPriority || a.Priority > sdk.MaxPriority {
		return nil, nil, sdk.Validationf(sdk.CodeInvalidInput, "priority %d out of range %d..%d", a.Priority, sdk.MinPriority, sdk.MaxPriority)
	}
	caps, err := sdk.NormalizeCapabilities(a.RequiredCapabilities)
	if err != nil {
		return nil, nil, err
	}
	retry, err := retryArgs(a.Retry)
	if err != nil {
		return nil, nil, err
	}
	for _, d := range []struct {
		what string
		d    time.Duration
	}{{"attempt timeout", a.AttemptTimeout}, {"dedup ttl", a.DedupTTL}} {
		if d.d < 0 {
			return nil, nil, sdk.Validationf(sdk.CodeInvalidInput, "%s is negative", d.what)
		}
	}
	if len(a.Tags) > MaxTagsDefault {
		return nil, nil, sdk.Validationf(sdk.CodeInvalidInput, "%d tags, over the %d limit", len(a.Tags), MaxTagsDefault)
	}
	for k := range a.Tags {
		if k == "" || len(k) > sdk.MaxIDLength {
			return nil, nil, sdk.Validationf(sdk.CodeInvalidInput, "tag name must be 1..%d bytes", sdk.MaxIDLength)
		}
	}
	if len(a.IdempotencyKey) > maxIdempotencyKeyLen {
		return nil, nil, sdk.Validationf(sdk.CodeInvalidInput, "idempotency key over %d bytes", maxIdempotencyKeyLen)
	}

	id := a.ID
	var part int
	switch {
	case id != "":
		if part, err = b.partitionOf("", id); err != nil {
			return nil, nil, err
		}
	case a.IdempotencyKey != "":
		// The key decides the partition, so a retried create meets its first.
		h := fnv.New32a()
		h.Write([]byte(a.IdempotencyKey))
		part = int(h.Sum32() % uint32(b.partitions))
		id = sdk.NewExecutionID(part)
	default:
		part = int(b.next.Add(1) % uint64(b.partitions))
		id = sdk.NewExecutionID(part)
	}
	tag := sdk.PartitionTag(part)
	ek, lk, pk := keysOf(id), laneKeysOf(tag, a.Lane), partKeysOf(tag)
	idem := pk.noop
	if a.IdempotencyKey != "" {
		idem = idemKey(tag, a.IdempotencyKey)
	}
	dedup := a.DedupTTL
	if dedup == 0 {
		dedup = DedupTTLDefault
	}
	// The wire carries whole milliseconds: round sub-millisecond values up
	// rather than turn them into 0 (no timeout, or an invalid PX).
	dedup = ceilMS(dedup)
	attemptTimeout := ceilMS(a.AttemptTimeout)
	offers := pk.noop
	if b.handoffOn() {
		offers = offersKey(a.Lane)
	}
	keys := []string{ek.core, ek.ctx, lk.eligible, lk.delayed, idem, pk.deadlines, pk.all, arrivalsChannel(tag),
		offers, pk.leases, lk.active, pk.timeouts}
	args := make([]string, 0, 18+2*len(a.Tags))
	args = append(args, string(id), string(a.Lane), a.Kind, strconv.Itoa(a.Priority),
		msString(a.DelayUntil), joinCSV(caps))
	args = append(args, retry...)
	args = append(args, durMS(attemptTimeout), msString(a.Deadline), durMS(dedup),
		string(a.Payload), strconv.Itoa(len(a.Tags)))
	for k, v := range a.Tags {
		args = append(args, k, v)
	}
	return keys, args, nil
}

// retryArgs validates a policy and renders ARGV 7..13 of ff_create.
// Most creates leave the policy zero: its rendering is made once.
func retryArgs(p sdk.RetryPolicy) ([]string, error) {
	if p.MaxRetries == 0 && p.Backoff == (sdk.Backoff{}) && len(p.RetryableCategories) == 0 {
		return defaultRetryArgs, nil
	}
	return renderRetryArgs(p)
}

// defaultRetryArgs is the zero policy rendered (callers copy it, never
// change it).
var defaultRetryArgs, _ = renderRetryArgs(sdk.RetryPolicy{})

func renderRetryArgs(p sdk.RetryPolicy) ([]string, error) {
	if p.MaxRetries < 0 {
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "MaxRetries is negative")
	}
	bo := p.Backoff
	kind := bo.Kind
	switch kind {
	case "":
		kind = sdk.BackoffExponential
	case sdk.BackoffExponential, sdk.BackoffFixed:
	default:
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "backoff kind %q is unknown", bo.Kind)
	}
	if bo.Initial < 0 || bo.Max < 0 {
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "backoff durations must not be negative")
	}
	if bo.Initial == 0 && !bo.ZeroDelay {
		bo.Initial = backoffInitialDefault
	}
	if bo.Max == 0 {
		bo.Max = backoffMaxDefault
	}
	if bo.Max < bo.Initial {
		bo.Max = bo.Initial
	}
	if bo.Multiplier == 0 {
		bo.Multiplier = backoffMultDefault
	}
	if bo.Multiplier < 1 || math.IsNaN(bo.Multiplier) || math.IsInf(bo.Multiplier, 0) || bo.Multiplier > 1000 {
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "backoff multiplier %v out of range 1..1000", bo.Multiplier)
	}
	if bo.Jitter < 0 || bo.Jitter > 1 || math.IsNaN(bo.Jitter) {
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "backoff jitter %v out of range 0..1", bo.Jitter)
	}
	cats, err := sdk.NormalizeCapabilities(p.RetryableCategories)
	if err != nil {
		return nil, sdk.Validationf(sdk.CodeInvalidInput, "retryable categories: %s", err.(*sdk.Error).Msg)
	}
	return []string{strconv.Itoa(p.MaxRetries), string(kind), durMS(bo.Initial), durMS(bo.Max),
		strconv.FormatFloat(bo.Multiplier, 'g', -1, 64), strconv.FormatFloat(bo.Jitter, 'g', -1, 64),
		joinCSV(cats)}, nil
}

// ceilMS rounds a positive duration up to whole milliseconds.
func ceilMS(d time.Duration) time.Duration {
	if d > 0 && d%time.Millisecond != 0 {
		d = d.Truncate(time.Millisecond) + time.Millisecond
	}
	return d
}
