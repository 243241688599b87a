package policy

import (
	_ "embed"
	"fmt"
	"sync"

	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

// SchemaText is the Cedar schema (human-readable format) that every
// mandate policy is validated against.
//
//go:embed schema.cedarschema
var SchemaText []byte

var (
	schemaOnce     sync.Once
	schemaResolved *resolved.Schema
	schemaErr      error
)

// resolvedSchema parses and resolves SchemaText once.
func resolvedSchema() (*resolved.Schema, error) {
	schemaOnce.Do(func() {
		var s schema.Schema
		s.SetFilename("schema.cedarschema")
		if err := s.UnmarshalCedar(SchemaText); err != nil {
			schemaErr = fmt.Errorf("policy: built-in schema: %w", err)
			return
		}
		schemaResolved, schemaErr = s.Resolve()
	})
	return schemaResolved, schemaErr
}

// newValidator returns a strict validator for the built-in schema.
func newValidator() (*validate.Validator, error) {
	s, err := resolvedSchema()
	if err != nil {
		return nil, err
	}
	return validate.New(s), nil
}
