package api

// The token service's wire names: one definition for sigild (internal/tokens,
// signer) and for workloads (client).

// Paths of the token service's endpoints, relative to the issuer.
const (
	PathToken       = "/oauth2/token"
	PathIntrospect  = "/oauth2/introspect"
	PathRevoke      = "/oauth2/revoke"
	PathJWKS        = "/jwks.json"
	PathRevocations = "/v1/revocations"
	PathMetadata    = "/.well-known/oauth-authorization-server"
)

// Grant types of the token endpoint.
const (
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// Token type identifiers of RFC 8693 §3 and the transaction token draft,
// for subject_token_type, actor_token_type, requested_token_type and
// issued_token_type.
const (
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeTxnToken    = "urn:ietf:params:oauth:token-type:txn_token"
)
