package valkeybackend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/sdk"
)

// Versions and rolling deploys.
//
// A client's version is the VERSION of the library it embeds (lua.Version).
// A library also declares MIN_CLIENT, the oldest client version it serves,
// and ff_version returns both. Against a primary holding library version S
// that serves clients from M, a client of version C:
//
//   - S == C: runs; nothing to load.
//   - S < C, or no library: loads its own (a newer client upgrades).
//   - S > C and M <= C: runs against the newer library, which stays.
//   - S > C and M > C: refuses with sdk.ErrLibraryIncompatible naming S, M
//     and C, and loads nothing anywhere.
//
// A library from before MIN_CLIENT answers ff_version with its version
// alone; it is read as serving only its own version (M = S).
//
// Loads are serialised by a lock key, and what the primaries hold is read
// again under it, so two clients preparing at once cannot downgrade: the
// older one sees the newer library and leaves it.

// library is a Functions library text and the versions it declares.
type library struct {
	source    string
	version   int // VERSION, ff_version's first field
	minClient int // MIN_CLIENT, the oldest client version it serves
}

// parseLibrary reads the versions a library text declares.
func parseLibrary(src string) (library, error) {
	v, m, err := lua.Declared(src)
	if err != nil {
		return library{}, err
	}
	lib := library{source: src}
	if lib.version, err = strconv.Atoi(v); err != nil {
		return library{}, fmt.Errorf("VERSION %q is not an integer", v)
	}
	if lib.minClient, err = strconv.Atoi(m); err != nil || lib.minClient > lib.version {
		return library{}, fmt.Errorf("MIN_CLIENT %q is not an integer up to VERSION", m)
	}
	return lib, nil
}

// embeddedLibrary is the library this build carries, as namespace ns
// loads it (lua.Namespaced).
func embeddedLibrary(ns string) (library, error) {
	lib, err := parseLibrary(lua.Namespaced(ns))
	if err != nil {
		return library{}, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: "connect",
			Msg: "the embedded flowfabric library: " + err.Error()}
	}
	return lib, nil
}

// held is what one primary holds.
type held struct {
	addr      string
	node      valkey.Client
	present   bool // false: no flowfabric library (or no ff_version)
	version   int
	minClient int
}

// prepareLockTTL bounds how long a crashed Prepare holds the load lock.
const prepareLockTTL = 30 * time.Second

// Prepare loads the library on every primary that holds none or an older
// one, and never replaces a newer one (see "Versions and rolling deploys"
// above). It needs no admin command: primaries are found with HELLO, which
// every user may run, and when nothing is to be loaded it runs only
// FCALL_RO ff_version, so a least-privilege user may call it. Transient
// errors are retried up to PrepareAttempts times; a load the server rejects
// (compile error) is reported at once, an ACL denial as
// sdk.ErrPermissionDenied naming the command.
func (b *Backend) Prepare(ctx context.Context) (sdk.PrepareOutcome, error) {
	return b.prepare(ctx, b.lib)
}

func (b *Backend) prepare(ctx context.Context, lib library) (sdk.PrepareOutcome, error) {
	primaries, err := b.primaries(ctx)
	if err != nil {
		return sdk.PrepareOutcome{}, err
	}
	state, err := b.readLibraries(ctx, primaries, lib)
	if err != nil {
		return sdk.PrepareOutcome{}, err
	}
	load, err := planLoad(lib, state)
	if err != nil {
		return sdk.PrepareOutcome{}, err
	}
	if len(load) == 0 {
		return prepared(lib, state, 0), nil
	}
	unlock, err := b.lockPrepare(ctx)
	if err != nil {
		return sdk.PrepareOutcome{}, err
	}
	defer unlock()
	// Another process may have loaded while this one waited for the lock.
	if state, err = b.readLibraries(ctx, primaries, lib); err != nil {
		return sdk.PrepareOutcome{}, err
	}
	if load, err = planLoad(lib, state); err != nil {
		return sdk.PrepareOutcome{}, err
	}
	for _, h := range load {
		if err := b.loadLibrary(ctx, h, lib); err != nil {
			return sdk.PrepareOutcome{}, fmt.Errorf("prepare %s: %w", h.addr, err)
		}
	}
	return prepared(lib, state, len(load)), nil
}

// planLoad returns the primaries lib must be loaded on: those with no
// library or an older one. A newer library that does not serve lib's
// version is an error, and then nothing is to be loaded anywhere.
func planLoad(lib library, state []held) ([]held, error) {
	var load []held
	for _, h := range state {
		switch {
		case !h.present || h.version < lib.version:
			load = append(load, h)
		case h.version > lib.version && h.minClient > lib.version:
			v, m, c := strconv.Itoa(h.version), strconv.Itoa(h.minClient), strconv.Itoa(lib.version)
			return nil, sdk.NewError("prepare", sdk.CodeLibraryIncompatible, fmt.Sprintf(
				"%s holds flowfabric library v%s, which serves clients from v%s; this client is v%s "+
					"(a library is never downgraded: upgrade this client)", h.addr, v, m, c), v, m, c)
		}
	}
	return load, nil
}

// prepared describes what Prepare found and did.
func prepared(lib library, state []held, loaded int) sdk.PrepareOutcome {
	newest := 0
	for _, h := range state {
		newest = max(newest, h.version)
	}
	var out sdk.PrepareOutcome
	switch {
	case loaded > 0:
		out = sdk.PrepareOutcome{Applied: true,
			Detail: fmt.Sprintf("FUNCTION LOAD flowfabric v%d on %d of %d primaries", lib.version, loaded, len(state))}
	case newest > lib.version:
		out.Detail = fmt.Sprintf("flowfabric v%d already loaded; it serves this client (v%d) and is kept", newest, lib.version)
	default:
		out.Detail = fmt.Sprintf("flowfabric v%d already loaded", lib.version)
	}
	return out
}

// primaries returns the nodes that accept writes, in address order. Each
// node tells its role in the reply to HELLO without arguments, which every
// authenticated user may send (ROLE and INFO are admin or dangerous).
func (b *Backend) primaries(ctx context.Context) ([]held, error) {
	nodes := b.client.Nodes()
	var out []held
	for addr, node := range nodes {
		h, err := hello(ctx, "prepare", node)
		if err != nil {
			return nil, fmt.Errorf("prepare %s: %w", addr, err)
		}
		if h.role == "master" {
			out = append(out, held{addr: addr, node: node})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	if len(out) == 0 {
		return nil, sdk.TransportError("prepare", fmt.Errorf("no primary among %d nodes", len(nodes)))
	}
	return out, nil
}

// helloInfo is what a node's HELLO reply says about it.
type helloInfo struct {
	role  string // "master" or "replica"
	mode  string // "standalone" or "cluster"
	major int    // server major version, 0 if unknown
}

// hello asks a node about itself with HELLO without arguments (it changes
// nothing on the connection).
func hello(ctx context.Context, op string, node valkey.Client) (helloInfo, error) {
	m, err := node.Do(ctx, node.B().Hello().Build()).AsMap()
	if err != nil {
		return helloInfo{}, backendError(op, err)
	}
	str := func(k string) string {
		v := m[k]
		s, _ := v.ToString()
		return s
	}
	h := helloInfo{role: str("role"), mode: str("mode")}
	if v := str("version"); v != "" {
		major, _, _ := strings.Cut(v, ".")
		h.major, _ = strconv.Atoi(major)
	}
	if h.role == "" || h.mode == "" {
		return helloInfo{}, &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: op, Msg: "HELLO reply lacks role or mode"}
	}
	return h, nil
}

// readLibraries asks every primary which library it holds (lib is the one
// this client would load, for the error about a version it cannot read).
func (b *Backend) readLibraries(ctx context.Context, primaries []held, lib library) ([]held, error) {
	out := make([]held, len(primaries))
	for i, h := range primaries {
		err := b.retry(ctx, func() error {
			r, err := decode("prepare", h.node.Do(ctx, h.node.B().FcallRo().Function(b.function("ff_version")).Numkeys(0).Build()))
			if err != nil {
				if sdk.CodeOf(err) == sdk.CodeUnavailable { // no library, or no ff_version in it
					h.present = false
					return nil
				}
				return err // an ACL denial names fcall_ro
			}
			v, verr := strconv.Atoi(r.field(0))
			m, merr := strconv.Atoi(r.field(1))
			if r.field(1) == "" { // a library from before MIN_CLIENT
				m, merr = v, nil
			}
			if verr != nil || merr != nil {
				return sdk.NewError("prepare", sdk.CodeLibraryIncompatible,
					fmt.Sprintf("ff_version answers %q, %q: not integer versions; not replaced", r.field(0), r.field(1)),
					r.field(0), r.field(1), strconv.Itoa(lib.version))
			}
			h.present, h.version, h.minClient = true, v, m
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("prepare %s: %w", h.addr, err)
		}
		out[i] = h
	}
	return out, nil
}

// loadLibrary replaces the library on one primary.
func (b *Backend) loadLibrary(ctx context.Context, h held, lib library) error {
	return b.retry(ctx, func() error {
		err := h.node.Do(ctx, h.node.B().FunctionLoad().Replace().FunctionCode(lib.source).Build()).Error()
		if err == nil {
			return nil
		}
		if pe := permissionError("prepare", "function|load", err); pe != nil {
			return pe
		}
		if be := backendError("prepare", err); sdk.KindOf(be) == sdk.KindTransport {
			return be
		}
		return &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: "prepare",
			Msg: "the server rejected the flowfabric library", Err: err}
	})
}

// retry runs f until it succeeds, fails other than transiently, or
// PrepareAttempts tries have failed.
func (b *Backend) retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := 0; attempt < b.opts.PrepareAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return backendError("prepare", ctx.Err())
			case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
			}
		}
		if err = f(); err == nil || sdk.KindOf(err) != sdk.KindTransport {
			return err
		}
	}
	return err
}

// lockPrepare takes the load lock (b.ks.prepare, SET NX PX), waiting for
// another Prepare to finish for up to prepareLockTTL, and returns its
// release. The release deletes the key only while the lock is surely still
// this process's (its TTL has not run out), so it needs no script.
func (b *Backend) lockPrepare(ctx context.Context) (func(), error) {
	var buf [16]byte
	_, _ = rand.Read(buf[:])
	token := hex.EncodeToString(buf[:])
	giveUp := time.Now().Add(prepareLockTTL + time.Second)
	for {
		at := time.Now()
		err := b.client.Do(ctx, b.client.B().Set().Key(b.ks.prepare).Value(token).Nx().Px(prepareLockTTL).Build()).Error()
		if err == nil {
			return func() {
				if time.Since(at) < prepareLockTTL-time.Second {
					dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
					defer cancel()
					b.client.Do(dctx, b.client.B().Del().Key(b.ks.prepare).Build())
				}
			}, nil
		}
		if !valkey.IsValkeyNil(err) { // nil: another Prepare holds it
			if pe := permissionError("prepare", "set", err); pe != nil {
				return nil, pe
			}
			if be := backendError("prepare", err); sdk.KindOf(be) != sdk.KindTransport {
				return nil, be
			}
		}
		if time.Now().After(giveUp) {
			return nil, &sdk.Error{Kind: sdk.KindTimeout, Code: sdk.CodeTimeout, Op: "prepare",
				Msg: "another Prepare held " + b.ks.prepare + " for " + prepareLockTTL.String()}
		}
		select {
		case <-ctx.Done():
			return nil, backendError("prepare", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkTopology fails when the server is a cluster node but the client did
// not come up in cluster mode: valkey-go falls back to a single-node client
// when it cannot read the topology (CLUSTER SHARDS, or CLUSTER SLOTS before
// Valkey 8), which an ACL user lacking that command would hit, and every
// call to another node's slots would then fail.
func (b *Backend) checkTopology(ctx context.Context) error {
	if b.cluster {
		return nil
	}
	for _, node := range b.client.Nodes() {
		h, err := hello(ctx, "connect", node)
		if err != nil || h.mode != "cluster" {
			return err
		}
		cmd, name := node.B().ClusterShards().Build(), "cluster|shards"
		if h.major > 0 && h.major < 8 {
			cmd, name = node.B().ClusterSlots().Build(), "cluster|slots"
		}
		if err := node.Do(ctx, cmd).Error(); err != nil {
			if pe := permissionError("connect", name, err); pe != nil {
				pe.Msg += "; the client needs it to find the cluster's nodes"
				return pe
			}
			return backendError("connect", err)
		}
		return &sdk.Error{Kind: sdk.KindBug, Code: sdk.CodeBug, Op: "connect",
			Msg: "the server runs in cluster mode but the client connected to it as a single node"}
	}
	return nil
}
