package token_test

import (
	"fmt"

	"github.com/mandatehq/mandate/internal/token"
)

// A task delegated from agent alpha to agent beta carries a two-level act
// claim with the current agent outermost (RFC 8693 §4.1).
func ExampleActorChain() {
	act := token.ActorChain([]string{
		"spiffe://example.org/agent/alpha",
		"spiffe://example.org/agent/beta",
	})
	fmt.Println(act.Subject)
	fmt.Println(act.Act.Subject)
	fmt.Println(act.Chain())
	// Output:
	// spiffe://example.org/agent/beta
	// spiffe://example.org/agent/alpha
	// [spiffe://example.org/agent/alpha spiffe://example.org/agent/beta]
}
