package valkeytest

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/valkey-io/valkey-go"
)

// ACL users live on each node, so the helpers below act on every address
// given (a cluster's nodes, or one server), as the default user, each
// through its own short-lived connection.

// SetUser runs ACL SETUSER name rules... on every node among addrs, creating
// the user or changing it: SetUser(ctx, addrs, "worker", "reset", "on",
// ">secret", "~ff:*", "&ff:*", "+fcall").
func SetUser(ctx context.Context, addrs []string, name string, rules ...string) error {
	return eachNode(ctx, addrs, func(c valkey.Client) error {
		return c.Do(ctx, c.B().AclSetuser().Username(name).Rule(rules...).Build().Pin()).Error()
	})
}

// ACLDenials returns what the nodes among addrs refused since the last
// ResetACLLog, one line per ACL LOG entry ("user reason object", e.g.
// "worker command function|load"), sorted.
func ACLDenials(ctx context.Context, addrs []string) ([]string, error) {
	var out []string
	err := eachNode(ctx, addrs, func(c valkey.Client) error {
		entries, err := c.Do(ctx, c.B().AclLog().Count(1000).Build().Pin()).ToArray()
		if err != nil {
			return err
		}
		for _, e := range entries {
			m, err := e.AsMap()
			if err != nil {
				return err
			}
			field := func(k string) string {
				v := m[k]
				s, _ := v.ToString()
				return s
			}
			out = append(out, strings.Join([]string{field("username"), field("reason"), field("object")}, " "))
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// ResetACLLog empties the ACL LOG of every node among addrs.
func ResetACLLog(ctx context.Context, addrs []string) error {
	return eachNode(ctx, addrs, func(c valkey.Client) error {
		return c.Do(ctx, c.B().AclLog().Reset().Build().Pin()).Error()
	})
}

// eachNode calls f with a client bound to each address.
func eachNode(ctx context.Context, addrs []string, f func(c valkey.Client) error) error {
	for _, a := range addrs {
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{a}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			return fmt.Errorf("valkeytest: %s: %w", a, err)
		}
		err = f(c)
		c.Close()
		if err != nil {
			return fmt.Errorf("valkeytest: %s: %w", a, err)
		}
	}
	return nil
}
