// Command agent-token is the agent side of docs/quickstart.md, in a few
// lines of standard OAuth: it makes an agent key pair, and gets tokens from
// a mandate server with a private_key_jwt client assertion (RFC 7523) and
// token exchange (RFC 8693).
//
//	go run ./scripts/agent-token keygen build-bot
//	    writes build-bot.jwk (private; keep it) and build-bot.pub.jwk (register it)
//	go run ./scripts/agent-token token build-bot [tsk_…]
//	    prints an agent token response, or a task token response for the task
//
// Flags: -server (default http://127.0.0.1:8420), -trust-domain (default
// mandate.local).
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:8420", "mandate server URL (its issuer)")
	trustDomain := flag.String("trust-domain", "mandate.local", "the server's trust domain")
	flag.Parse()
	args := flag.Args()
	var err error
	switch {
	case len(args) == 2 && args[0] == "keygen":
		err = keygen(args[1])
	case (len(args) == 2 || len(args) == 3) && args[0] == "token":
		taskID := ""
		if len(args) == 3 {
			taskID = args[2]
		}
		err = token(*server, "spiffe://"+*trustDomain+"/agent/"+args[1], args[1]+".jwk", taskID)
	default:
		err = fmt.Errorf("usage: agent-token keygen NAME | agent-token token NAME [TASK_ID]")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent-token:", err)
		os.Exit(1)
	}
}

func keygen(name string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	k := jose.JSONWebKey{Key: priv, KeyID: name + "-1", Algorithm: string(jose.EdDSA), Use: "sig"}
	privJSON, _ := json.Marshal(k)
	k.Key = pub
	pubJSON, _ := json.Marshal(k)
	if err := os.WriteFile(name+".jwk", privJSON, 0o600); err != nil {
		return err
	}
	return os.WriteFile(name+".pub.jwk", pubJSON, 0o644)
}

func token(server, agentID, keyFile, taskID string) error {
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(raw); err != nil {
		return err
	}
	// Discover the token endpoint (RFC 8414).
	var meta struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := getJSON(server+"/.well-known/oauth-authorization-server", &meta); err != nil {
		return err
	}
	// The client assertion: signed by the agent's key, for the token endpoint.
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", key.KeyID))
	if err != nil {
		return err
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	now := time.Now()
	assertion, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: agentID, Subject: agentID, Audience: jwt.Audience{meta.TokenEndpoint},
		ID: hex.EncodeToString(jti), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
	if err != nil {
		return err
	}
	// client_credentials → agent token (identity only).
	var agentTok struct {
		AccessToken string `json:"access_token"`
	}
	body, err := postForm(meta.TokenEndpoint, url.Values{
		"grant_type":            {"client_credentials"},
		"client_id":             {agentID},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}, &agentTok)
	if err != nil || taskID == "" {
		fmt.Println(string(body))
		return err
	}
	// Token exchange → task token for the task an admin started.
	body, err = postForm(meta.TokenEndpoint, url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {agentTok.AccessToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"task_id":            {taskID},
	}, nil)
	fmt.Println(string(body))
	return err
}

func getJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func postForm(u string, form url.Values, v any) ([]byte, error) {
	resp, err := http.PostForm(u, form)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return body, fmt.Errorf("POST %s: %s: %s", u, resp.Status, body)
	}
	if v != nil {
		return body, json.Unmarshal(body, v)
	}
	return body, nil
}
