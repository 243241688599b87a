package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on client metadata (RFC 7591 §2).
const (
	MaxRedirectURIs    = 16
	MaxRedirectURILen  = 2048
	MaxClientNameLen   = 200
	MaxRegistrationLen = 16 << 10
)

// ClientMetadata is the metadata of a public client, from its Client ID
// Metadata Document or its dynamic registration (RFC 7591 §2). Fields
// mandate does not use are accepted and dropped, as RFC 7591 §2 asks.
type ClientMetadata struct {
	ClientID                string   `json:"client_id,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
}

// RegistrationError is an RFC 7591 §3.2.2 error.
type RegistrationError struct {
	Code        string
	Description string
	Status      int
	cause       error
}

func (e *RegistrationError) Error() string { return e.Code + ": " + e.Description }

// Unwrap returns the internal cause.
func (e *RegistrationError) Unwrap() error { return e.cause }

// AsRegistrationError converts err into a *RegistrationError.
func AsRegistrationError(err error) *RegistrationError {
	var e *RegistrationError
	if errors.As(err, &e) {
		return e
	}
	return &RegistrationError{Code: CodeTemporarilyUnavailable, Description: "the request could not be served", Status: http.StatusServiceUnavailable, cause: err}
}

func badMetadata(format string, args ...any) *RegistrationError {
	return &RegistrationError{Code: "invalid_client_metadata", Description: fmt.Sprintf(format, args...), Status: http.StatusBadRequest}
}

func badRedirect(format string, args ...any) *RegistrationError {
	return &RegistrationError{Code: "invalid_redirect_uri", Description: fmt.Sprintf(format, args...), Status: http.StatusBadRequest}
}

// privateScheme is a private-use URI scheme (RFC 8252 §7.1): reverse
// domain name, so it has a dot.
var privateScheme = regexp.MustCompile(`^[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+$`)

// parseClientMetadata parses and checks client metadata: a JSON object
// of at most MaxRegistrationLen bytes whose known fields have their types;
// redirect URIs that are https, http on a loopback host, or a private-use
// scheme, without fragments; a public client (token_endpoint_auth_method
// none); the authorization code grant and the code response type. A
// document (isDocument) must carry its client_id; a registration must
// not choose one.
func parseClientMetadata(b []byte, isDocument bool) (*ClientMetadata, error) {
	if len(b) > MaxRegistrationLen {
		return nil, badMetadata("the metadata is larger than %d bytes", MaxRegistrationLen)
	}
	if !utf8.Valid(b) {
		return nil, badMetadata("the metadata is not UTF-8")
	}
	var md ClientMetadata
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&md); err != nil {
		return nil, badMetadata("the metadata is not a JSON object with the RFC 7591 field types")
	}
	if dec.More() {
		return nil, badMetadata("the metadata has data after its JSON object")
	}
	if err := checkNoDuplicateKeys(b); err != nil {
		return nil, badMetadata("%v", err)
	}
	switch {
	case isDocument && md.ClientID == "":
		return nil, badMetadata("a client metadata document must carry its client_id")
	case !isDocument && md.ClientID != "":
		return nil, badMetadata("a client cannot choose its client_id")
	case len(md.RedirectURIs) == 0:
		return nil, badRedirect("redirect_uris is required")
	case len(md.RedirectURIs) > MaxRedirectURIs:
		return nil, badRedirect("at most %d redirect_uris", MaxRedirectURIs)
	case md.TokenEndpointAuthMethod != "" && md.TokenEndpointAuthMethod != "none":
		return nil, badMetadata("only public clients are served (token_endpoint_auth_method none)")
	case md.GrantTypes != nil && !slices.Contains(md.GrantTypes, GrantAuthorizationCode):
		return nil, badMetadata("grant_types must include authorization_code")
	case md.ResponseTypes != nil && !slices.Contains(md.ResponseTypes, "code"):
		return nil, badMetadata("response_types must include code")
	case len(md.ClientName) > MaxClientNameLen || strings.IndexFunc(md.ClientName, unicode.IsControl) >= 0:
		return nil, badMetadata("client_name must be at most %d characters without control characters", MaxClientNameLen)
	}
	for _, g := range md.GrantTypes {
		if g != GrantAuthorizationCode && g != GrantRefreshToken {
			return nil, badMetadata("grant type %q is not available to public clients", clip(g))
		}
	}
	for _, r := range md.RedirectURIs {
		if err := checkRedirectURI(r); err != nil {
			return nil, err
		}
	}
	if md.ClientURI != "" {
		if u, err := url.Parse(md.ClientURI); err != nil || u.Scheme != "https" || u.Host == "" || len(md.ClientURI) > MaxRedirectURILen {
			return nil, badMetadata("client_uri must be an https URL")
		}
	}
	return &md, nil
}

// checkRedirectURI refuses redirect URIs a browser could be sent
// anywhere harmful with: javascript:, data:, relative or fragment URIs,
// plain http to a host other than loopback, user info.
func checkRedirectURI(r string) error {
	if r == "" || len(r) > MaxRedirectURILen || !utf8.ValidString(r) || strings.ContainsAny(r, "#\\ \t\r\n") {
		return badRedirect("redirect URI %q is malformed", clip(r))
	}
	u, err := url.Parse(r)
	if err != nil || u.Scheme == "" {
		return badRedirect("redirect URI %q is not an absolute URI", clip(r))
	}
	switch {
	case u.Scheme == "https" && u.Host != "" && u.User == nil:
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()) && u.User == nil:
	case privateScheme.MatchString(u.Scheme) && u.Scheme == strings.ToLower(u.Scheme) && u.User == nil:
	default:
		return badRedirect("redirect URI %q must be https, http to a loopback address, or a private-use scheme", clip(r))
	}
	return nil
}

// checkNoDuplicateKeys refuses a JSON object that names a member twice:
// two parsers could read two different documents from it.
func checkNoDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("the metadata must be a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return errors.New("the metadata is malformed JSON")
		}
		k, _ := t.(string)
		if seen[k] {
			return fmt.Errorf("the metadata names %q twice", clip(k))
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return errors.New("the metadata is malformed JSON")
		}
	}
	return nil
}

func (md *ClientMetadata) encode() ([]byte, error) { return json.Marshal(md) }

func clip(s string) string {
	if len(s) > 100 {
		s = s[:100]
	}
	return strings.ToValidUTF8(s, "?")
}
