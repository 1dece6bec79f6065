package valkeybackend

import (
	"context"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Acknowledged writes (Options.WaitReplicas, Options.WaitAOF).
//
// Valkey replicates asynchronously: a primary answers a write before any
// replica has it, so a failover can lose a write whose success a caller
// already acted on (a submit the producer forgot, a completion the worker
// reported). With WaitReplicas or WaitAOF set, the calls whose success a
// caller acts on (see README "Durability": creates, terminal calls, signal
// delivery, suspension, flow building, operator and admission writes) are
// followed by WAIT (or WAITAOF) on the same connection, which blocks until
// that connection's writes are acknowledged or the timeout passes; fewer
// acknowledgements than asked turn a success into sdk.CodeNotReplicated
// (kind timeout: the outcome is unknown, not a failure of the job).
//
// Same connection: valkey-go sends a DoMulti that holds a blocking command
// (WAIT is one) on one dedicated connection, in order. WAIT has no key, so
// on a cluster it is pinned to its FCALL's slot with Completed.SetSlot, and
// the cluster client sends both to that slot's primary.
//
// Off (the default), doAcked is client.Do: nothing is added.

// acking reports whether writes wait for acknowledgements.
func (b *Backend) acking() bool { return b.opts.WaitReplicas > 0 || b.opts.WaitAOF }

// doAcked sends one write, acknowledged when the backend is told to.
func (b *Backend) doAcked(ctx context.Context, op string, cmd valkey.Completed) valkey.ValkeyResult {
	if !b.acking() {
		return b.client.Do(ctx, cmd)
	}
	return b.doAckedMulti(ctx, op, cmd)[0]
}

// doAckedMulti sends writes pipelined, each acknowledged when the backend is
// told to: one WAIT after them per slot they touch (one in all on a single
// server), each result judged by its own slot's WAIT.
func (b *Backend) doAckedMulti(ctx context.Context, op string, cmds ...valkey.Completed) []valkey.ValkeyResult {
	if !b.acking() || len(cmds) == 0 {
		return b.client.DoMulti(ctx, cmds...)
	}
	n := len(cmds)
	all := make(valkey.Commands, n, n+1)
	copy(all, cmds)
	waitOf := make([]int, n)
	bySlot := map[uint16]int{}
	for i, c := range cmds {
		if !b.cluster && i > 0 {
			waitOf[i] = n // one server: one WAIT covers the connection's writes
			continue
		}
		w := b.waitCmd(slotKey(c))
		s := w.Slot()
		j, ok := bySlot[s]
		if !ok {
			j = len(all)
			bySlot[s] = j
			all = append(all, w)
		}
		waitOf[i] = j
	}
	res := b.client.DoMulti(ctx, all...)
	for i := range n {
		if !succeeded(res[i]) {
			continue // nothing written, or the call's own error says more
		}
		if err := b.judgeWait(op, res[waitOf[i]]); err != nil {
			res[i] = valkey.NewErrorResult(err)
		}
	}
	return res[:n]
}

// waitCmd builds the WAIT (or WAITAOF) that follows a write to key.
func (b *Backend) waitCmd(key string) valkey.Completed {
	ms := max(1, b.opts.WaitTimeout.Milliseconds())
	n := int64(b.opts.WaitReplicas)
	var c valkey.Completed
	if b.opts.WaitAOF {
		c = b.client.B().Waitaof().Numlocal(1).Numreplicas(n).Timeout(ms).Build()
	} else {
		c = b.client.B().Wait().Numreplicas(n).Timeout(ms).Build()
	}
	return c.SetSlot(key)
}

// judgeWait turns a WAIT/WAITAOF reply into nil (enough acknowledged) or
// the error the write's caller gets.
func (b *Backend) judgeWait(op string, res valkey.ValkeyResult) error {
	if err := res.Error(); err != nil {
		return backendError(op, err) // transport: an unknown outcome too
	}
	want := b.opts.WaitReplicas
	if b.opts.WaitAOF {
		arr, err := res.AsIntSlice()
		if err != nil || len(arr) != 2 {
			return &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "WAITAOF reply is not two integers", Err: err}
		}
		if arr[0] < 1 || arr[1] < int64(want) {
			return notReplicated(op, arr[1], want, "local fsync "+strconv.FormatInt(arr[0], 10)+"/1")
		}
		return nil
	}
	got, err := res.AsInt64()
	if err != nil {
		return &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "WAIT reply is not an integer", Err: err}
	}
	if got < int64(want) {
		return notReplicated(op, got, want, "")
	}
	return nil
}

func notReplicated(op string, got int64, want int, more string) error {
	msg := "fewer replicas acknowledged the write than asked, in time; a failover may lose it"
	if more != "" {
		msg += " (" + more + ")"
	}
	return &sdk.Error{Kind: sdk.KindTimeout, Code: sdk.CodeNotReplicated, Op: op, Msg: msg,
		Detail: []string{strconv.FormatInt(got, 10), strconv.Itoa(want)}}
}

// succeeded reports a write that may have changed something: a success
// envelope, or any reply that is not an envelope (a plain command). A
// failure envelope ({0, code, ...}) wrote nothing, by the library's rule.
func succeeded(res valkey.ValkeyResult) bool {
	if res.Error() != nil {
		return false
	}
	arr, err := res.ToArray()
	if err != nil || len(arr) == 0 {
		return true
	}
	flag, err := arr[0].AsInt64()
	return err != nil || flag != 0
}

// slotKey is a key of cmd, to pin its WAIT to cmd's node: an FCALL's first
// key, else the command's first argument (SADD key ...).
func slotKey(cmd valkey.Completed) string {
	s := cmd.Commands()
	if len(s) > 3 && strings.HasPrefix(s[0], "FCALL") && s[2] != "0" {
		return s[3]
	}
	if len(s) > 1 {
		return s[1]
	}
	return ""
}

// checkAOF fails Connect when WaitAOF is set and a primary has appendonly
// off: every acknowledged write would fail there. A WAITAOF on a fresh
// connection has nothing to wait for and answers at once.
func (b *Backend) checkAOF(ctx context.Context) error {
	if !b.opts.WaitAOF {
		return nil
	}
	for addr, node := range b.client.Nodes() {
		err := node.Do(ctx, node.B().Waitaof().Numlocal(1).Numreplicas(0).Timeout(1).Build()).Error()
		if err == nil {
			continue
		}
		if strings.Contains(err.Error(), "replica") {
			continue // a cluster's replica: its primary is asked too
		}
		if strings.Contains(err.Error(), "appendonly") {
			return sdk.Validationf(sdk.CodeInvalidInput, "WaitAOF needs appendonly yes on every primary; %s has it off", addr)
		}
		return backendError("connect", err)
	}
	return nil
}
