package valkeybackend

import (
	"regexp"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// deniedCommand finds the command a Valkey ACL denial names, as the server
// spells it ("get", "function|load").
var deniedCommand = regexp.MustCompile(`permissions to run the '([^']+)' command`)

// permissionError returns the typed error of an ACL denial, or nil when err
// is not one. Valkey answers NOPERM for a command, key or channel the user
// may not use, and "ERR ACL failure in script: ..." when a library function
// calls a command the user may not run (a function's commands are checked
// against the user who called it). cmd names the command that was sent, for
// the denials whose message names none (keys and channels); "" if unknown.
func permissionError(op, cmd string, err error) *sdk.Error {
	ve, ok := valkey.IsValkeyErr(err)
	if !ok {
		return nil
	}
	msg := ve.Error()
	inScript := strings.Contains(msg, "ACL failure in script")
	if !inScript && !strings.HasPrefix(msg, "NOPERM") {
		return nil
	}
	detail := []string{cmd}
	var what string
	m := deniedCommand.FindStringSubmatch(msg)
	switch {
	case m != nil:
		detail[0] = m[1]
		what = "run '" + m[1] + "'"
	case strings.Contains(msg, "a channel"):
		detail = append(detail, "channel")
		what = "use this channel"
	default: // a key, or a denial this version of the server words differently
		detail = append(detail, "key")
		what = "access this key"
	}
	if m == nil && cmd != "" {
		what += " with '" + cmd + "'"
	}
	if inScript {
		what += ", which a flowfabric function calls (a function's commands are checked against its caller)"
	}
	return &sdk.Error{Kind: sdk.KindUnavailable, Code: sdk.CodePermissionDenied, Op: op,
		Msg: "the Valkey ACL user may not " + what + " (see README: least privilege)", Detail: detail, Err: err}
}
