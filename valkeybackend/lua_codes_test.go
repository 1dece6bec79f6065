package valkeybackend

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/lua"
	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// luaCodeKinds is every failure code the library answers, keyed by its sdk
// constant (so a code sdk lacks does not compile), with the kind a caller
// should see. A new fail('code') in the library must be added here: the
// test below fails until it is.
var luaCodeKinds = map[string]sdk.ErrorKind{
	sdk.CodeInvalidInput:              sdk.KindValidation,
	sdk.CodeCapabilityMismatch:        sdk.KindValidation,
	sdk.CodeExecutionNotFound:         sdk.KindNotFound,
	sdk.CodeExecutionNotEligible:      sdk.KindContention,
	sdk.CodeExecutionNotInEligibleSet: sdk.KindContention,
	sdk.CodeInvalidClaimGrant:         sdk.KindContention,
	sdk.CodeClaimGrantExpired:         sdk.KindContention,
	sdk.CodeUseClaimResumed:           sdk.KindContention,
	sdk.CodeExecutionNotActive:        sdk.KindContention,
	sdk.CodeGrantAlreadyExists:        sdk.KindState,
	sdk.CodeExecutionNotLeaseable:     sdk.KindState,
	sdk.CodeNotAResumedExecution:      sdk.KindState,
	sdk.CodeLeaseRevoked:              sdk.KindState,
	sdk.CodeLeaseExpired:              sdk.KindState,
	sdk.CodeStaleLease:                sdk.KindState,
	sdk.CodeExecutionNotRunnable:      sdk.KindState,
	sdk.CodeNoActiveLease:             sdk.KindState,
	sdk.CodeExecutionNotReclaimable:   sdk.KindState,
	sdk.CodeExecutionNotTerminal:      sdk.KindState,
	sdk.CodeReplayLimitExceeded:       sdk.KindState,
	sdk.CodeWorkerInstanceInUse:       sdk.KindConflict,
	sdk.CodeExecutionIDInUse:          sdk.KindConflict,
	sdk.CodeExecutionTerminal:         sdk.KindState,
	sdk.CodeInvalidToken:              sdk.KindValidation,
	sdk.CodeWaitpointClosed:           sdk.KindState,
	sdk.CodeWaitpointExpired:          sdk.KindState,
	sdk.CodeWaitpointExists:           sdk.KindConflict,
	sdk.CodeWaitpointNotFound:         sdk.KindNotFound,
	sdk.CodeWaitpointNotPending:       sdk.KindState,
	sdk.CodeSignalLimitExceeded:       sdk.KindResourceExhausted,
	sdk.CodeHMACSecretNotInitialized:  sdk.KindState,
	sdk.CodeSummaryConflict:           sdk.KindConflict,
	sdk.CodeQuotaNotFound:             sdk.KindNotFound,
	sdk.CodeBudgetNotFound:            sdk.KindNotFound,
	sdk.CodeScheduleNotFound:          sdk.KindNotFound,
	sdk.CodeScheduleChanged:           sdk.KindContention,
	sdk.CodeFlowNotFound:              sdk.KindNotFound,
	sdk.CodeFlowTerminal:              sdk.KindState,
	sdk.CodeStaleGraphRevision:        sdk.KindContention,
	sdk.CodeNotFlowMember:             sdk.KindValidation,
	sdk.CodeFlowMemberElsewhere:       sdk.KindConflict,
	sdk.CodeFlowTooLarge:              sdk.KindValidation,
	sdk.CodeEdgeExists:                sdk.KindConflict,
	sdk.CodeEdgeNotFound:              sdk.KindNotFound,
	sdk.CodeCycleDetected:             sdk.KindConflict,
	sdk.CodeInvalidDependency:         sdk.KindState,
	sdk.CodeGroupPolicyLocked:         sdk.KindConflict,
	sdk.CodeRotationConflict:          sdk.KindConflict,
}

// luaFailureCodes returns the codes of every fail('code') in the library,
// sorted and once each. Failures reach Go only through fail: its envelope
// {0, code, detail...} (decode), and ff_renew's per-lease frames, which
// carry the code of a check_fence failure (itself a fail). The test fails
// when a failure is built another way (fail with a computed code, or a
// {0, ...} envelope written by hand), which it could not check.
func luaFailureCodes(t *testing.T) []string {
	t.Helper()
	src := regexp.MustCompile(`(?s)--\[\[.*?\]\]`).ReplaceAllString(lua.Source(), "")
	src = regexp.MustCompile(`--[^\n]*`).ReplaceAllString(src, "")
	if n := len(regexp.MustCompile(`local function fail\(`).FindAllString(src, -1)); n != 1 {
		t.Fatalf("found %d definitions of fail, want 1", n)
	}
	calls := regexp.MustCompile(`\bfail\(`).FindAllStringIndex(src, -1)
	literal := regexp.MustCompile(`^fail\('([a-z_]+)'`)
	var codes []string
	for _, c := range calls {
		if strings.HasSuffix(src[:c[0]], "local function ") {
			continue
		}
		m := literal.FindStringSubmatch(src[c[0]:])
		if m == nil {
			end := min(len(src), c[0]+60)
			t.Errorf("fail without a literal code: %q", src[c[0]:end])
			continue
		}
		codes = append(codes, m[1])
	}
	// The one hand-written failure envelope is fail's own body.
	if n := len(regexp.MustCompile(`\{\s*0\s*,`).FindAllString(src, -1)); n != 1 {
		t.Errorf("found %d {0, ...} envelopes, want only fail's own", n)
	}
	slices.Sort(codes)
	return slices.Compact(codes)
}

// Every failure code of the library is an sdk code, and decode turns the
// library's envelope for it into an *sdk.Error of that code and the
// intended kind (an unknown code would decode as KindBug). The envelope is
// a real server reply, from a script answering as fail does.
func TestLuaFailureCodesAreSDKCodes(t *testing.T) {
	codes := luaFailureCodes(t)
	if len(codes) < 10 {
		t.Fatalf("found only %d codes: %v", len(codes), codes)
	}
	for _, code := range codes {
		if _, ok := luaCodeKinds[code]; !ok {
			t.Errorf("fail('%s'): not in luaCodeKinds (is it an sdk code? which kind?)", code)
		}
	}
	for code := range luaCodeKinds {
		if !slices.Contains(codes, code) {
			t.Errorf("luaCodeKinds lists %s, which the library never answers", code)
		}
	}

	srv := valkeytest.NewServer(t)
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const script = "return {0, ARGV[1], unpack(ARGV, 2)}"
	for _, code := range codes {
		want, known := luaCodeKinds[code]
		if !known {
			continue
		}
		// execution_not_active's detail (state, epoch, attempt_id, ended_by).
		detail := []string{"completed", "3", "a", "l"}
		res := client.Do(t.Context(), client.B().Eval().Script(script).Numkeys(0).
			Arg(append([]string{code}, detail...)...).Build())
		_, err := decode("op", res)
		var e *sdk.Error
		if !errors.As(err, &e) {
			t.Errorf("%s: decoded to %v, want an *sdk.Error", code, err)
			continue
		}
		if e.Code != code || e.Kind != want || e.Op != "op" || !slices.Equal(e.Detail, detail) {
			t.Errorf("%s: decoded to code %s kind %v op %q detail %v, want kind %v",
				code, e.Code, e.Kind, e.Op, e.Detail, want)
		}
		if code == sdk.CodeExecutionNotActive {
			d, ok := e.NotActive()
			if !ok || d.State != "completed" || d.Epoch != 3 || d.AttemptID != "a" || d.EndedBy != "l" {
				t.Errorf("%s: detail decoded to %+v %v", code, d, ok)
			}
		}
		// ff_renew's frames build the error from the code (and that detail).
		if k := sdk.NewError("renew", code, "").Kind; k != want {
			t.Errorf("%s: renew frame error kind %v, want %v", code, k, want)
		}
	}
}
