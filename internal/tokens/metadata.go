package tokens

import (
	"strings"

	"github.com/sigil-dev/sigil/api"
)

// Paths of the token service's endpoints, relative to the issuer (defined
// in api, shared with workloads).
const (
	PathToken       = api.PathToken
	PathIntrospect  = api.PathIntrospect
	PathRevoke      = api.PathRevoke
	PathJWKS        = api.PathJWKS
	PathRevocations = api.PathRevocations
	PathMetadata    = api.PathMetadata
)

// Metadata is the RFC 8414 authorization server metadata. Members named
// sigil_* are extensions: the RFC 8693 token types the token endpoint
// accepts and issues, and the revocation feed with its event type.
type Metadata struct {
	Issuer                                    string   `json:"issuer"`
	TokenEndpoint                             string   `json:"token_endpoint"`
	IntrospectionEndpoint                     string   `json:"introspection_endpoint"`
	RevocationEndpoint                        string   `json:"revocation_endpoint"`
	JWKSURI                                   string   `json:"jwks_uri"`
	ResponseTypesSupported                    []string `json:"response_types_supported"`
	GrantTypesSupported                       []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported         []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	TLSClientCertificateBoundAccessTokens     bool     `json:"tls_client_certificate_bound_access_tokens"`
	TokenTypesSupported                       []string `json:"sigil_token_types_supported"`
	RevocationEventsEndpoint                  string   `json:"sigil_revocation_events_endpoint"`
	RevocationEventTypes                      []string `json:"sigil_revocation_event_types_supported"`
}

// Metadata describes the service. There is no authorization endpoint, so
// response_types_supported is empty.
func (s *Service) Metadata() Metadata {
	base := strings.TrimSuffix(s.issuer, "/")
	tls := []string{"tls_client_auth"}
	return Metadata{
		Issuer: s.issuer, TokenEndpoint: base + PathToken, IntrospectionEndpoint: base + PathIntrospect,
		RevocationEndpoint: base + PathRevoke, JWKSURI: base + PathJWKS,
		ResponseTypesSupported:                    []string{},
		GrantTypesSupported:                       []string{GrantClientCredentials, GrantTokenExchange},
		TokenEndpointAuthMethodsSupported:         tls,
		IntrospectionEndpointAuthMethodsSupported: tls,
		RevocationEndpointAuthMethodsSupported:    tls,
		TLSClientCertificateBoundAccessTokens:     true,
		TokenTypesSupported:                       []string{api.TokenTypeAccessToken, api.TokenTypeJWT, api.TokenTypeTxnToken},
		RevocationEventsEndpoint:                  base + PathRevocations,
		RevocationEventTypes:                      []string{EventTokenRevoked},
	}
}
