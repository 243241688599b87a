package server

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/token"
)

// TestAuthZENWithDPoPTaskToken: an agent asks about itself with a
// DPoP-bound task token; a batch is authenticated once (its proof is
// single-use), and the token without its proof is refused.
func TestAuthZENWithDPoPTaskToken(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t, testConfig(t))
	sock := socketClient(s.SocketPath())
	if code, body := sockDo(t, sock, "POST", "/admin/v1/agents", "application/json",
		`{"name": "coder", "owner": "alice@example.org", "escalation": "oncall@example.org", "tier": "supervised"}`); code != 201 {
		t.Fatalf("register: %d %s", code, body)
	}
	code, body := sockDo(t, sock, "POST", "/admin/v1/tasks", "application/json",
		`{"agent": "coder", "on_behalf_of": "alice@example.org", "purpose": "p", "scope": ["file.*:/repo/**"]}`)
	if code != 201 {
		t.Fatalf("task: %d %s", code, body)
	}
	var tk struct {
		ID    string   `json:"id"`
		Agent string   `json:"agent"`
		Actor []string `json:"actors"`
	}
	_ = json.Unmarshal([]byte(body), &tk)

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwk := jose.JSONWebKey{Key: pub, Algorithm: string(jose.EdDSA)}
	tp, _ := jwk.Thumbprint(crypto.SHA256)
	now := time.Now()
	at, err := s.authz.Keyring().Sign(&token.Claims{
		Issuer: s.PublicURL(), Subject: "alice@example.org", Audience: jwt.Audience{s.PublicURL()},
		Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), IssuedAt: jwt.NewNumericDate(now),
		ID: "jti-dpop-test", ClientID: tk.Agent, TaskID: tk.ID, Scope: "file.*:/repo/**", Use: token.UseTask,
		Act: token.ActorChain([]string{tk.Agent}), Cnf: &token.Confirmation{JKT: base64.RawURLEncoding.EncodeToString(tp)},
	})
	if err != nil {
		t.Fatal(err)
	}
	url := s.PublicURL() + "/access/v1/evaluations"
	proof := func() string {
		jti := make([]byte, 12)
		_, _ = rand.Read(jti)
		sum := sha256.Sum256([]byte(at))
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv},
			(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := jwt.Signed(signer).Claims(map[string]any{
			"htm": "POST", "htu": url, "iat": time.Now().Unix(),
			"jti": base64.RawURLEncoding.EncodeToString(jti), "ath": base64.RawURLEncoding.EncodeToString(sum[:]),
		}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	batch := `{"subject": {"type": "agent", "id": "` + tk.Agent + `"}, "action": {"name": "file.read"},
		"evaluations": [{"resource": {"type": "file", "id": "/repo/a"}},
		                {"action": {"name": "file.write"}, "resource": {"type": "file", "id": "/repo/a"}},
		                {"resource": {"type": "file", "id": "/etc/passwd"}}]}`
	send := func(scheme, dpop string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+s.Addr().String()+"/access/v1/evaluations", strings.NewReader(batch))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", scheme+" "+at)
		if dpop != "" {
			req.Header.Set("DPoP", dpop)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body = send("DPoP", proof())
	if code != 200 {
		t.Fatalf("DPoP batch: %d %s", code, body)
	}
	var out struct {
		Evaluations []struct {
			Decision bool `json:"decision"`
			Context  struct {
				Decision string `json:"decision"`
			} `json:"context"`
		} `json:"evaluations"`
	}
	_ = json.Unmarshal([]byte(body), &out)
	var got []string
	for _, e := range out.Evaluations {
		got = append(got, e.Context.Decision)
	}
	if strings.Join(got, ",") != "allow,approval_required,deny" {
		t.Errorf("decisions = %v (%s)", got, body)
	}
	if code, body := send("Bearer", ""); code != 401 {
		t.Errorf("DPoP-bound token without a proof: %d %s", code, body)
	}
	// RFC 9449 §7.1: the DPoP-bound token under the Bearer scheme is
	// refused even with a valid proof, with a DPoP challenge.
	req, _ := http.NewRequest("POST", "http://"+s.Addr().String()+"/access/v1/evaluations", strings.NewReader(batch))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+at)
	req.Header.Set("DPoP", proof())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	found := false
	for _, c := range resp.Header.Values("WWW-Authenticate") {
		found = found || strings.HasPrefix(c, "DPoP ") && strings.Contains(c, `error="invalid_token"`)
	}
	if resp.StatusCode != 401 || !found {
		t.Errorf("Bearer + DPoP-bound token + proof: %d %q, want 401 with a DPoP invalid_token challenge", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
}
