package policy

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

// schemaText is the Cedar schema (human-readable form) every policy set is
// validated against. The package documentation describes it.
//
//go:embed schema.cedarschema
var schemaText string

// validator is built once from schemaText; an error means the embedded schema
// itself is broken, which tests catch.
var validator = sync.OnceValues(func() (*validate.Validator, error) {
	var s schema.Schema
	s.SetFilename("schema.cedarschema")
	if err := s.UnmarshalCedar([]byte(schemaText)); err != nil {
		return nil, fmt.Errorf("policy: parse embedded schema: %w", err)
	}
	rs, err := s.Resolve()
	if err != nil {
		return nil, fmt.Errorf("policy: resolve embedded schema: %w", err)
	}
	return validate.New(rs, validate.WithStrict()), nil
})

// validatePolicy type-checks one parsed policy against the schema in strict
// mode. The validator reports one problem per request environment in map
// order; the lines are sorted and deduplicated so messages are stable.
func validatePolicy(v *validate.Validator, p *ast.Policy) error {
	err := v.Policy("", p)
	if err == nil {
		return nil
	}
	lines := strings.Split(err.Error(), "\n")
	slices.Sort(lines)
	return fmt.Errorf("%s", strings.Join(slices.Compact(lines), "; "))
}
