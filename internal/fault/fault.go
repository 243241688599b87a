// Package fault holds the one error class every layer of mandate shares:
// ErrUnavailable, a failure an operator can fix and a client may retry —
// the store is gone, the disk is full, the database is read-only, a lock
// was held past the busy timeout. Storage backends wrap their errors in
// it; the domain passes them on; the HTTP layers answer them with 503
// and Retry-After (problem+json, or temporarily_unavailable on the OAuth
// endpoints) in their one mapping function each, instead of a 500.
//
// The package imports nothing from mandate, so that domain packages,
// which may not import storage, can test for the class.
package fault

import "errors"

// ErrUnavailable marks a failure an operator can fix: the request may
// succeed later, unchanged. Test for it with errors.Is.
var ErrUnavailable = errors.New("temporarily unavailable")

// RetryAfter is the Retry-After header value (seconds) sent with every
// 503 answered for an ErrUnavailable.
const RetryAfter = "5"
