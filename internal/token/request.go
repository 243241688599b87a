package token

import (
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mandatehq/mandate/internal/audit"
)

// OAuth parameter values.
const (
	GrantClientCredentials = "client_credentials"
	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	// ClientAssertionJWT is the client_assertion_type of private_key_jwt.
	ClientAssertionJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Size limits on token endpoint parameters.
const (
	// MaxParamLen bounds any single parameter value.
	MaxParamLen = 16 << 10
	// MaxAssertionSize bounds client assertions and JWT bearer grants.
	MaxAssertionSize = 8 << 10
)

// TokenRequest is a token endpoint request (RFC 6749 §4.4, RFC 7523,
// RFC 8693), with mandate's task extension parameters.
type TokenRequest struct {
	GrantType string

	// Client authentication (private_key_jwt).
	ClientID            string
	ClientAssertionType string
	ClientAssertion     string

	// Assertion is the jwt-bearer grant's JWT.
	Assertion string

	Scope string

	// Token exchange (RFC 8693 §2.1).
	SubjectToken       string
	SubjectTokenType   string
	ActorToken         string
	ActorTokenType     string
	RequestedTokenType string
	Audience           string
	Resource           string

	// Task extension parameters.
	Purpose     string
	OnBehalfOf  string
	Sensitivity string
	// TaskTTL is a Go duration ("30m") or a number of seconds.
	TaskTTL    string
	MaxActions string
	MaxWrites  string
	TaskID     string

	// Authorization code and refresh grants (OAuth 2.1 §4.1.3, §4.3).
	Code         string
	RedirectURI  string
	CodeVerifier string
	RefreshToken string

	// DPoPProof is the DPoP request header, if any.
	DPoPProof string
}

// ParseTokenRequest reads a token request from form parameters. Repeated
// parameters are refused (RFC 6749 §3.2), as are oversized values and
// names or values that are not UTF-8 (RFC 6749 Appendix B); unknown
// parameters are ignored (RFC 6749 §3.2).
func ParseTokenRequest(form url.Values) (*TokenRequest, error) {
	r := &TokenRequest{}
	fields := map[string]*string{
		"grant_type":            &r.GrantType,
		"client_id":             &r.ClientID,
		"client_assertion_type": &r.ClientAssertionType,
		"client_assertion":      &r.ClientAssertion,
		"assertion":             &r.Assertion,
		"scope":                 &r.Scope,
		"subject_token":         &r.SubjectToken,
		"subject_token_type":    &r.SubjectTokenType,
		"actor_token":           &r.ActorToken,
		"actor_token_type":      &r.ActorTokenType,
		"requested_token_type":  &r.RequestedTokenType,
		"audience":              &r.Audience,
		"resource":              &r.Resource,
		"purpose":               &r.Purpose,
		"on_behalf_of":          &r.OnBehalfOf,
		"sensitivity":           &r.Sensitivity,
		"task_ttl":              &r.TaskTTL,
		"max_actions":           &r.MaxActions,
		"max_writes":            &r.MaxWrites,
		"task_id":               &r.TaskID,
		"code":                  &r.Code,
		"redirect_uri":          &r.RedirectURI,
		"code_verifier":         &r.CodeVerifier,
		"refresh_token":         &r.RefreshToken,
	}
	if err := CheckParams(form); err != nil {
		return nil, err
	}
	for name, dst := range fields {
		if v := form[name]; len(v) == 1 {
			*dst = v[0]
		}
	}
	return r, nil
}

// CheckParams refuses repeated and oversized parameters, and names and
// values that are not valid UTF-8: RFC 6749 Appendix B has parameters
// UTF-8 encoded, and nothing that is not can be recorded as it was sent.
// It is the first check of every token, introspection and revocation
// request, before anything about the request is recorded.
func CheckParams(form url.Values) error {
	for name, vs := range form {
		if !utf8.ValidString(name) {
			return errInvalidRequest("parameter %q is not valid UTF-8", audit.Clip(name, 64))
		}
		if len(vs) > 1 {
			return errInvalidRequest("parameter %q is repeated", audit.Clip(name, 64))
		}
		if len(vs) == 1 && len(vs[0]) > MaxParamLen {
			return errInvalidRequest("parameter %q is too long", audit.Clip(name, 64))
		}
		if len(vs) == 1 && !utf8.ValidString(vs[0]) {
			return errInvalidRequest("parameter %q is not valid UTF-8", audit.Clip(name, 64))
		}
	}
	return nil
}

// parseTTL parses a Go duration or a number of seconds.
func parseTTL(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 || n > int64((100*365*24*time.Hour)/time.Second) {
			return 0, errInvalidRequest("task_ttl must be positive")
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errInvalidRequest("task_ttl must be a positive duration (\"30m\") or a number of seconds")
	}
	return d, nil
}

// parseBudget parses a non-negative budget limit; empty means fallback.
func parseBudget(name, s string, fallback int64) (int64, error) {
	if s == "" {
		return fallback, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, errInvalidRequest("%s must be a non-negative integer", name)
	}
	return n, nil
}

// TokenResponse is a successful token endpoint response (RFC 6749 §5.1,
// RFC 8693 §2.2.1).
type TokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope,omitempty"`
	RefreshToken    string `json:"refresh_token,omitempty"`
}

// Introspection is an RFC 7662 introspection response.
type Introspection struct {
	Active    bool          `json:"active"`
	Scope     string        `json:"scope,omitempty"`
	ClientID  string        `json:"client_id,omitempty"`
	Subject   string        `json:"sub,omitempty"`
	Expiry    int64         `json:"exp,omitempty"`
	IssuedAt  int64         `json:"iat,omitempty"`
	NotBefore int64         `json:"nbf,omitempty"`
	Issuer    string        `json:"iss,omitempty"`
	Audience  []string      `json:"aud,omitempty"`
	JTI       string        `json:"jti,omitempty"`
	TokenType string        `json:"token_type,omitempty"`
	TokenUse  Use           `json:"token_use,omitempty"`
	TaskID    string        `json:"task_id,omitempty"`
	Tier      string        `json:"tier,omitempty"`
	Act       *Actor        `json:"act,omitempty"`
	Cnf       *Confirmation `json:"cnf,omitempty"`
}

// Metadata is the RFC 8414 authorization server metadata.
type Metadata struct {
	Issuer                                     string   `json:"issuer"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthSigningAlgValues  []string `json:"introspection_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	RevocationEndpointAuthSigningAlgValues     []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`
	DPoPSigningAlgValuesSupported              []string `json:"dpop_signing_alg_values_supported"`
	ScopesSupported                            []string `json:"scopes_supported,omitempty"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint,omitempty"`
	RegistrationEndpoint                       string   `json:"registration_endpoint,omitempty"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported,omitempty"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported,omitempty"`
	AuthorizationResponseISSParameterSupported bool     `json:"authorization_response_iss_parameter_supported,omitempty"`
}
