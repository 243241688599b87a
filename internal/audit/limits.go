package audit

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on the fields of an Event, in bytes of UTF-8. Normalize cuts a
// longer string at the last rune boundary within its limit; a list or
// map over its limit makes the event invalid (those are built by
// mandate's code, not copied from a request), except Reasons, whose
// surplus is dropped and counted (see DetailReasonsOmitted). An event that
// is still larger than MaxEventSize when encoded is not written.
const (
	// MaxTypeLen bounds Type.
	MaxTypeLen = 64
	// MaxIDLen bounds Actor, Agent, OnBehalfOf, Task and each entry of
	// Chain: the SPIFFE ID limit.
	MaxIDLen = 2048
	// MaxChainLen bounds the entries of Chain (delegation depth is at
	// most 16).
	MaxChainLen = 32
	// MaxActionLen bounds Action.
	MaxActionLen = 128
	// MaxResourceLen bounds Resource.
	MaxResourceLen = 8 << 10
	// MaxDecisionLen bounds Decision.
	MaxDecisionLen = 32
	// MaxReasonLen bounds Reason.
	MaxReasonLen = 4 << 10
	// MaxReasons bounds the entries of Reasons.
	MaxReasons = 32
	// MaxPolicyIDLen bounds PolicyReason.Policy.
	MaxPolicyIDLen = 512
	// MaxMessageLen bounds PolicyReason.Message and Outcome.Error.
	MaxMessageLen = 1 << 10
	// MaxApprovalIDLen bounds ApprovalID.
	MaxApprovalIDLen = 128
	// MaxStatusLen bounds Outcome.Status.
	MaxStatusLen = 64
	// MaxArgsDigestLen bounds ArgsDigest.
	MaxArgsDigestLen = 128
	// MaxArgsLen bounds Args in canonical JSON; larger Args make the
	// event invalid (JSON cannot be cut).
	MaxArgsLen = 128 << 10
	// MaxDetails bounds the entries of Details.
	MaxDetails = 32
	// MaxDetailKeyLen bounds each key of Details.
	MaxDetailKeyLen = 64
	// MaxDetailValueLen bounds each value of Details.
	MaxDetailValueLen = 4 << 10
	// MaxRequestIDLen bounds RequestID.
	MaxRequestIDLen = 128
	// MaxPointLen bounds Point.
	MaxPointLen = 64
)

// DetailReasonsOmitted is the Details key under which Normalize counts
// the Reasons it dropped beyond MaxReasons.
const DetailReasonsOmitted = "reasons_omitted"

// Clip returns s as valid UTF-8, each run of invalid bytes replaced by
// U+FFFD, cut to at most n bytes at a rune boundary. It is the rule
// Normalize applies to every string of an event; callers that cut a
// string for a log or a message use it too, so that no cut splits a
// character.
func Clip(s string, n int) string {
	if len(s) <= n && utf8.ValidString(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	n = max(n, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// clean puts every string of ev in its limit as valid UTF-8 (see Clip)
// and checks the lengths of its lists. Slices and the map that need a
// change are copied: ev may share them with its caller.
func clean(ev *Event) error {
	ev.Type = Type(Clip(string(ev.Type), MaxTypeLen))
	ev.Actor = Clip(ev.Actor, MaxIDLen)
	ev.Agent = Clip(ev.Agent, MaxIDLen)
	if len(ev.Chain) > MaxChainLen {
		return fmt.Errorf("%w: chain has %d entries, over the limit of %d", ErrInvalid, len(ev.Chain), MaxChainLen)
	}
	ev.Chain = cleanList(ev.Chain, func(s *string) { *s = Clip(*s, MaxIDLen) })
	ev.OnBehalfOf = Clip(ev.OnBehalfOf, MaxIDLen)
	ev.Task = Clip(ev.Task, MaxIDLen)
	ev.Action = Clip(ev.Action, MaxActionLen)
	ev.Resource = Clip(ev.Resource, MaxResourceLen)
	ev.Decision = Clip(ev.Decision, MaxDecisionLen)
	ev.Reason = Clip(ev.Reason, MaxReasonLen)
	omitted := 0
	if len(ev.Reasons) > MaxReasons {
		omitted = len(ev.Reasons) - MaxReasons
		ev.Reasons = slices.Clone(ev.Reasons[:MaxReasons])
	}
	ev.Reasons = cleanList(ev.Reasons, func(r *PolicyReason) {
		r.Policy = Clip(r.Policy, MaxPolicyIDLen)
		r.Message = Clip(r.Message, MaxMessageLen)
	})
	ev.ApprovalID = Clip(ev.ApprovalID, MaxApprovalIDLen)
	if o := ev.Outcome; o != nil {
		if st, er := Clip(o.Status, MaxStatusLen), Clip(o.Error, MaxMessageLen); st != o.Status || er != o.Error {
			c := *o
			c.Status, c.Error = st, er
			ev.Outcome = &c
		}
	}
	ev.ArgsDigest = Clip(ev.ArgsDigest, MaxArgsDigestLen)
	if len(ev.Args) > MaxArgsLen {
		return fmt.Errorf("%w: args are %d bytes, over the %d-byte limit", ErrInvalid, len(ev.Args), MaxArgsLen)
	}
	if len(ev.Details) > MaxDetails {
		return fmt.Errorf("%w: %d details, over the limit of %d", ErrInvalid, len(ev.Details), MaxDetails)
	}
	ev.Details = cleanDetails(ev.Details)
	if omitted > 0 {
		d := make(map[string]string, len(ev.Details)+1)
		for k, v := range ev.Details {
			d[k] = v
		}
		d[DetailReasonsOmitted] = strconv.Itoa(omitted)
		ev.Details = d
	}
	ev.RequestID = Clip(ev.RequestID, MaxRequestIDLen)
	ev.Point = Clip(ev.Point, MaxPointLen)
	return nil
}

// cleanList applies fix to each element of s, on a copy if any changes.
func cleanList[T comparable](s []T, fix func(*T)) []T {
	for i := range s {
		v := s[i]
		fix(&v)
		if v == s[i] {
			continue
		}
		s = slices.Clone(s)
		s[i] = v
		for j := i + 1; j < len(s); j++ {
			fix(&s[j])
		}
		return s
	}
	return s
}

// cleanDetails returns details with keys and values in their limits (see
// Clip), on a copy if any changes. Keys that become equal keep the value
// of the first in byte order of the original keys.
func cleanDetails(details map[string]string) map[string]string {
	dirty := false
	for k, v := range details {
		if Clip(k, MaxDetailKeyLen) != k || Clip(v, MaxDetailValueLen) != v {
			dirty = true
			break
		}
	}
	if !dirty {
		return details
	}
	keys := detailKeys(make([]string, 0, len(details)), details)
	out := make(map[string]string, len(details))
	for _, k := range keys {
		ck := Clip(k, MaxDetailKeyLen)
		if _, seen := out[ck]; !seen {
			out[ck] = Clip(details[k], MaxDetailValueLen)
		}
	}
	return out
}
