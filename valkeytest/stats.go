package valkeytest

import (
	"context"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"
)

// The helpers below act on every primary among addrs (a standalone server is
// its own primary), each through its own short-lived connection, so their
// commands never mix with the counted traffic of the client under test.

// EachPrimary calls f with a client bound to each primary among addrs.
func EachPrimary(ctx context.Context, addrs []string, f func(c valkey.Client) error) error {
	for _, a := range addrs {
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{a}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			return err
		}
		role, err := c.Do(ctx, c.B().Role().Build().Pin()).ToArray()
		primary := false
		if err == nil && len(role) > 0 {
			r, _ := role[0].ToString()
			primary = r == "master"
		}
		if err == nil && primary {
			err = f(c)
		}
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// CommandCalls sums the "calls" of INFO commandstats per command over the
// primaries. Commands a script or function runs are counted too.
func CommandCalls(ctx context.Context, addrs []string) (map[string]int64, error) {
	return commandStat(ctx, addrs, "calls")
}

// CommandUsec sums the "usec" of INFO commandstats per command over the
// primaries: the server's microseconds inside each command. A script's or
// function's count its inner commands' too, which also have their own.
func CommandUsec(ctx context.Context, addrs []string) (map[string]int64, error) {
	return commandStat(ctx, addrs, "usec")
}

// commandStat sums field of INFO commandstats per command over the primaries.
func commandStat(ctx context.Context, addrs []string, field string) (map[string]int64, error) {
	out := map[string]int64{}
	err := EachPrimary(ctx, addrs, func(c valkey.Client) error {
		info, err := c.Do(ctx, c.B().Info().Section("commandstats").Build().Pin()).ToString()
		if err != nil {
			return err
		}
		for name, n := range ParseCommandStat(info, field) {
			out[name] += n
		}
		return nil
	})
	return out, err
}

// ParseCommandStats reads the per-command "calls" of an INFO commandstats
// section ("cmdstat_get:calls=3,usec=...").
func ParseCommandStats(info string) map[string]int64 { return ParseCommandStat(info, "calls") }

// ParseCommandStat reads one integer field ("calls", "usec", …) per command
// of an INFO commandstats section.
func ParseCommandStat(info, field string) map[string]int64 {
	out := map[string]int64{}
	prefix := field + "="
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "cmdstat_")
		if !ok {
			continue
		}
		name, fields, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(fields, ",") {
			if v, ok := strings.CutPrefix(kv, prefix); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[name] += n
			}
		}
	}
	return out
}

// ResetStats runs CONFIG RESETSTAT on every primary.
func ResetStats(ctx context.Context, addrs []string) error {
	return EachPrimary(ctx, addrs, func(c valkey.Client) error {
		return c.Do(ctx, c.B().ConfigResetstat().Build().Pin()).Error()
	})
}

// FlushAll empties every primary (FLUSHALL); loaded functions stay.
func FlushAll(ctx context.Context, addrs []string) error {
	return EachPrimary(ctx, addrs, func(c valkey.Client) error {
		return c.Do(ctx, c.B().Flushall().Build().Pin()).Error()
	})
}

// DeleteLibrary removes the Functions library name from every primary
// (FUNCTION DELETE); a primary without it is left as is.
func DeleteLibrary(ctx context.Context, addrs []string, name string) error {
	return EachPrimary(ctx, addrs, func(c valkey.Client) error {
		err := c.Do(ctx, c.B().FunctionDelete().LibraryName(name).Build().Pin()).Error()
		if err != nil && strings.Contains(err.Error(), "Library not found") {
			return nil
		}
		return err
	})
}
