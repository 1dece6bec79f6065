package valkeybackend

import (
	"context"
	"strconv"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// maxCompletesPerCall is ff_complete_batch's MAX_COMPLETES.
const maxCompletesPerCall = 128

// completeItemArgs is the ARGV of one item of ff_complete_batch without
// its offer members: the fence (4), lane, has-result flag, result, offer
// lane and member count.
const completeItemArgs = 9

// completeBatchCall is one ff_complete_batch: the items it carries (their
// indexes in the caller's slice), its KEYS and ARGV.
type completeBatchCall struct {
	items []int
	keys  []string
	args  []string
}

// CompleteBatch completes items as sdk.CompleteBatcher says: one
// ff_complete_batch for every maxCompletesPerCall items that may share a
// call (one server: any; a cluster: one partition's) and an offer TTL, all
// calls in one pipelined flush. An item that fails its checks here gets
// its error and is not sent; an offer refused here leaves its complete to
// go alone (OfferErr), as CompleteAndOffer does.
func (b *Backend) CompleteBatch(ctx context.Context, items []sdk.CompleteItem) []sdk.CompleteOutcome {
	const op = "complete"
	out := make([]sdk.CompleteOutcome, len(items))
	type group struct {
		part int
		ttl  string
	}
	open := map[group]*completeBatchCall{}
	var calls []*completeBatchCall
	for i, it := range items {
		p, err := b.handlePartition(op, it.Handle)
		if err == nil && len(it.Result) > b.opts.MaxPayloadBytes {
			err = sdk.NewError(op, sdk.CodePayloadTooLarge, "result too large")
		}
		if err != nil {
			out[i].Err = err
			continue
		}
		g := group{ttl: "0"}
		if b.cluster {
			g.part = p
		}
		var mem []string
		offerLane := ""
		if it.Offer != nil {
			m, offers, oerr := b.offerMembers("complete_and_offer", *it.Offer)
			if oerr != nil {
				out[i].OfferErr = oerr
			} else {
				mem, out[i].Offers, offerLane = m, offers, string(it.Offer.Lane)
				g.ttl = durMS(ceilMS(it.Offer.TTL))
				b.placeOffers(out[i].Offers, p)
			}
		}
		c := open[g]
		if c == nil || len(c.items) == maxCompletesPerCall {
			// One server: the items left all come here unless an offer
			// TTL differs; a cluster's spread over partitions.
			room := batchRoom(len(items)-i, maxCompletesPerCall, b.cluster)
			c = &completeBatchCall{items: make([]int, 0, room), keys: make([]string, 0, room),
				args: append(make([]string, 0, 3+completeItemArgs*room), "", g.ttl, b.offersScope())}
			open[g] = c
			calls = append(calls, c)
		}
		has := "0"
		if it.Result != nil {
			has = "1"
		}
		if len(mem) > 0 {
			// Its flow children handed to its offer come back in the reply
			// (inlineHandoffs), not through the inbox.
			c.args[2] = b.offersReplyScope()
		}
		c.items = append(c.items, i)
		h := it.Handle
		c.keys = append(c.keys, b.ks.coreKey(h.ExecutionID))
		c.args = append(appendFence(c.args, h), string(h.Lane), has, string(it.Result), offerLane, strconv.Itoa(len(mem)))
		c.args = append(c.args, mem...)
	}
	if len(calls) == 0 {
		return out
	}
	cmds := make(valkey.Commands, len(calls))
	for j, c := range calls {
		c.args[0] = strconv.Itoa(len(c.items))
		cmds[j] = b.fcall("ff_complete_batch", c.keys, c.args...)
	}
	for j, res := range b.doAckedMulti(ctx, op, cmds...) {
		c := calls[j]
		r, err := decode(op, res)
		if n := 1 + 6*len(c.items); err == nil && (len(r.fields) < n || (len(r.fields)-n)%2 != 0) {
			err = &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "complete batch reply of the wrong length"}
		}
		for k, i := range c.items {
			if err != nil {
				out[i].Err, out[i].Offers = err, nil
				continue
			}
			f := r.fields[1+6*k : 7+6*k]
			if f[0] != "" {
				out[i].Err, out[i].Offers = completeItemError(op, f[0], f[1:5]), nil
			} else if f[5] != "1" {
				out[i].Offers = nil
			}
		}
		if err == nil {
			b.inlineHandoffs(items, out, c.items, r.fields[1+6*len(c.items):])
		}
	}
	return out
}

// inlineHandoffs gives each item of a call (idx: their indexes in items
// and out) the hand-offs its reply carries after the items' fields: item
// number (1-based in the call), message (as an inbox push's) pairs. A
// message that is not a hand-off to the item's own instance is dropped,
// as the inbox reader drops one: its lease expires and the reclaim
// scanner recovers the execution.
func (b *Backend) inlineHandoffs(items []sdk.CompleteItem, out []sdk.CompleteOutcome, idx []int, pairs []string) {
	for j := 0; j+1 < len(pairs); j += 2 {
		k, err := strconv.Atoi(pairs[j])
		if err != nil || k < 1 || k > len(idx) {
			continue
		}
		i := idx[k-1]
		inst, t, ok := parseHandoff(pairs[j+1])
		if !ok || items[i].Offer == nil || inst != items[i].Offer.WorkerInstanceID {
			continue
		}
		out[i].Handoffs = append(out[i].Handoffs, t)
	}
}

// completeItemError is an item's fence failure as ff_complete returns it:
// execution_not_active carries its four details, other codes those that
// are not empty.
func completeItemError(op, code string, detail []string) error {
	if code != sdk.CodeExecutionNotActive {
		for len(detail) > 0 && detail[len(detail)-1] == "" {
			detail = detail[:len(detail)-1]
		}
	}
	if len(detail) == 0 {
		return sdk.NewError(op, code, "")
	}
	return sdk.NewError(op, code, "", append([]string(nil), detail...)...)
}
