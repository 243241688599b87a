// Package policy decides actions with Cedar policies (cedar-go).
//
// A policy set is compiled from sources — .cedar files in a directory, and
// policies managed through the admin API — validated against the Cedar
// schema that ships with mandate (Schema), and indexed by action and
// resource so that the cost of a decision does not grow with the number of
// policies that cannot apply to it. An Engine holds the live set behind an
// atomic pointer: Reload swaps in a new set without stalling decisions, and
// a set that fails to compile leaves the last good one in place.
//
// Decide turns a Request into a Decision with mandate's semantics, which
// are stricter than Cedar's:
//
//   - default deny: nothing is allowed unless a permit matches;
//   - any matching forbid denies;
//   - a matching forbid annotated @approval("name") yields
//     approval_required instead of deny, unless the request carries a
//     matching approval (Request.Approvals contains name), in which case the
//     forbid is lifted;
//   - a policy that errors during evaluation denies. cedar-go skips an
//     erroring policy, so an erroring forbid would silently not apply; the
//     Engine turns every evaluation error into a denial.
//
// Decisions carry reasons (policy ids with their @reason or @message
// annotation) and obligations (@obligation annotations of the policies
// that determined the decision).
//
// The package is pure: it does no I/O at decision time and knows nothing
// of tokens, stores or HTTP. Package access builds Requests from
// authenticated actions.
package policy
