package audit

// Event types about people and the clients that ask them for a mandate.
const (
	// TypePersonSignedIn: a person signed in (at an identity provider,
	// or the local administrator by the one-time link).
	TypePersonSignedIn Type = "person.signed_in"
	// TypePersonSignInRefused: a sign-in was refused (bad state or nonce,
	// an issuer mix-up, an ID token that does not verify, a spent link).
	TypePersonSignInRefused Type = "person.sign_in_refused"
	// TypeSessionEnded: a person signed out or ended one of their sessions.
	TypeSessionEnded Type = "session.ended"
	// TypeConsentGranted: a person approved a client's request; the task
	// it started is task.started, with the same task ID.
	TypeConsentGranted Type = "consent.granted"
	// TypeConsentRefused: a person denied a client's request, or the
	// request was refused before it reached them (unknown client, a
	// redirect URI that is not the client's, a PKCE downgrade, a bad CSRF
	// token).
	TypeConsentRefused Type = "consent.refused"
	// TypeClientRegistered: a client registered dynamically (RFC 7591).
	TypeClientRegistered Type = "client.registered"
	// TypeClientRefused: a registration or a client's metadata document
	// was refused.
	TypeClientRefused Type = "client.refused"
)
