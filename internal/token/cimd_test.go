package token

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// docServer serves a client metadata document at /client.json made by
// body (given its own URL) with the headers set by hdr.
func docServer(t *testing.T, handler func(w http.ResponseWriter, self string)) (*httptest.Server, string) {
	t.Helper()
	var self string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler(w, self) }))
	t.Cleanup(srv.Close)
	self = srv.URL + "/client.json"
	return srv, self
}

func goodDoc(self string) []byte {
	b, _ := json.Marshal(map[string]any{"client_id": self, "client_name": "Test client",
		"redirect_uris": []string{"http://127.0.0.1:9999/callback"}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"}})
	return b
}

func TestCIMDHostileDocuments(t *testing.T) {
	t.Parallel()
	slow := make(chan struct{})
	t.Cleanup(func() { close(slow) })
	cases := []struct {
		name    string
		handler func(w http.ResponseWriter, self string)
		want    string
	}{
		{"oversized", func(w http.ResponseWriter, self string) {
			w.Header().Set("Content-Type", "application/json")
			doc := strings.Replace(string(goodDoc(self)), `"client_name":"Test client"`, `"client_name":"`+strings.Repeat("x", MaxClientMetadataSize)+`"`, 1)
			_, _ = w.Write([]byte(doc))
		}, "larger than"},
		{"slow", func(w http.ResponseWriter, self string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-slow:
			case <-time.After(5 * time.Second):
			}
		}, "could not be read in time"},
		{"redirecting", func(w http.ResponseWriter, self string) {
			w.Header().Set("Location", "http://127.0.0.1:1/elsewhere.json")
			w.WriteHeader(http.StatusFound)
		}, "redirects"},
		{"not JSON", func(w http.ResponseWriter, self string) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("<html>hello</html>"))
		}, "not a JSON object"},
		{"not application/json", func(w http.ResponseWriter, self string) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write(goodDoc(self))
		}, "not application/json"},
		{"client_id mismatch", func(w http.ResponseWriter, self string) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(goodDoc(self + "x"))
		}, "another client_id"},
		{"client_id differs in case", func(w http.ResponseWriter, self string) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(goodDoc(strings.Replace(self, "client.json", "Client.json", 1)))
		}, "another client_id"},
		{"duplicate member", func(w http.ResponseWriter, self string) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"client_id":"` + self + `","redirect_uris":["https://a.example/cb"],"redirect_uris":["https://evil.example/cb"]}`))
		}, "twice"},
		{"javascript redirect", func(w http.ResponseWriter, self string) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"client_id":"` + self + `","redirect_uris":["javascript:alert(1)"]}`))
		}, "redirect URI"},
		{"confidential client", func(w http.ResponseWriter, self string) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"client_id":"` + self + `","redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}`))
		}, "public clients"},
		{"server error", func(w http.ResponseWriter, self string) { w.WriteHeader(500) }, "HTTP 500"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, self := docServer(t, tc.handler)
			var bad atomic.Int32
			f := newCIMDFetcher(MetadataFetch{AllowPrivate: true, Timeout: 300 * time.Millisecond}, time.Now,
				func(context.Context, string, error) { bad.Add(1) })
			c, err := f.client(t.Context(), self)
			var ce *ClientError
			if !errors.As(err, &ce) || !strings.Contains(ce.Reason, tc.want) {
				t.Fatalf("client(%s) = %+v, %v; want a ClientError containing %q", tc.name, c, err, tc.want)
			}
			if bad.Load() != 1 {
				t.Errorf("refusals reported = %d, want 1 (each is a ledger event)", bad.Load())
			}
		})
	}
}

func TestCIMDPrivateAddressRefused(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	_, self := docServer(t, func(w http.ResponseWriter, self string) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(goodDoc(self))
	})
	https := strings.Replace(self, "http://", "https://", 1)
	for _, id := range []string{self, https, strings.Replace(https, "127.0.0.1", "localhost", 1)} {
		f := newCIMDFetcher(MetadataFetch{}, time.Now, func(context.Context, string, error) {})
		if c, err := f.client(t.Context(), id); err == nil {
			t.Errorf("client(%s) without AllowPrivate = %+v, want refused", id, c)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the internal server was reached %d times, want 0", hits.Load())
	}
}

func TestCIMDURLShapes(t *testing.T) {
	t.Parallel()
	f := newCIMDFetcher(MetadataFetch{}, time.Now, func(context.Context, string, error) {})
	for _, id := range []string{
		"http://client.example/md.json", "https://client.example", "https://client.example/",
		"https://user@client.example/md.json", "https://client.example/a/../md.json", "https://client.example/md.json#x",
		"https://CLIENT.example/md.json", "https://client.example/md%2ejson",
	} {
		if err := f.checkMetadataURL(id); err == nil {
			t.Errorf("checkMetadataURL(%q) = nil, want refused", id)
		}
	}
	if err := f.checkMetadataURL("https://client.example/oauth/md.json"); err != nil {
		t.Errorf("checkMetadataURL(good) = %v", err)
	}
}

func TestCIMDCachedPerHeaders(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	cc := "max-age=60"
	_, self := docServer(t, func(w http.ResponseWriter, self string) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", cc)
		_, _ = w.Write(goodDoc(self))
	})
	clock := newClock()
	f := newCIMDFetcher(MetadataFetch{AllowPrivate: true}, clock.Now, func(context.Context, string, error) {})
	for range 3 {
		c, err := f.client(t.Context(), self)
		if err != nil || c.Name != "Test client" || len(c.RedirectURIs) != 1 {
			t.Fatalf("client = %+v, %v", c, err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("fetches within max-age = %d, want 1", hits.Load())
	}
	clock.Advance(61 * time.Second)
	cc = "no-store"
	_, _ = f.client(t.Context(), self)
	_, _ = f.client(t.Context(), self)
	if hits.Load() != 3 {
		t.Errorf("fetches after expiry with no-store = %d, want 3", hits.Load())
	}
}

func TestRegistrationMetadataHostile(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"not JSON":           `redirect_uris=https://a`,
		"array":              `[{"redirect_uris":["https://a.example/cb"]}]`,
		"no redirects":       `{"client_name":"x"}`,
		"chooses its id":     `{"client_id":"mdc_mine","redirect_uris":["https://a.example/cb"]}`,
		"data redirect":      `{"redirect_uris":["data:text/html,hi"]}`,
		"http remote":        `{"redirect_uris":["http://evil.example/cb"]}`,
		"fragment":           `{"redirect_uris":["https://a.example/cb#frag"]}`,
		"relative":           `{"redirect_uris":["/cb"]}`,
		"user info":          `{"redirect_uris":["https://a.example@evil.example/cb"]}`,
		"wrong type":         `{"redirect_uris":"https://a.example/cb"}`,
		"client_credentials": `{"redirect_uris":["https://a.example/cb"],"grant_types":["authorization_code","client_credentials"]}`,
		"control in name":    `{"redirect_uris":["https://a.example/cb"],"client_name":"a\u0000b"}`,
		"trailing data":      `{"redirect_uris":["https://a.example/cb"]} {}`,
		"too many":           `{"redirect_uris":[` + strings.Repeat(`"https://a.example/cb",`, MaxRedirectURIs) + `"https://a.example/cb"]}`,
		"oversized":          `{"redirect_uris":["https://a.example/cb"],"x":"` + strings.Repeat("a", MaxRegistrationLen) + `"}`,
		"secret method":      `{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_post"}`,
	} {
		if md, err := parseClientMetadata([]byte(body), false); err == nil {
			t.Errorf("parseClientMetadata(%s) = %+v, want refused", name, md)
		}
	}
	md, err := parseClientMetadata([]byte(`{"redirect_uris":["http://127.0.0.1:3000/cb","com.example.app:/cb"],"client_name":"App","software_id":"ignored"}`), false)
	if err != nil || len(md.RedirectURIs) != 2 {
		t.Errorf("parseClientMetadata(good) = %+v, %v", md, err)
	}
}

func FuzzParseClientMetadata(f *testing.F) {
	f.Add([]byte(`{"redirect_uris":["https://a.example/cb"]}`), false)
	f.Add([]byte(`{"client_id":"https://c.example/md.json","redirect_uris":["http://127.0.0.1/cb"]}`), true)
	f.Add([]byte(`{"redirect_uris":["x"],"redirect_uris":["y"]}`), false)
	f.Fuzz(func(t *testing.T, b []byte, doc bool) {
		md, err := parseClientMetadata(b, doc)
		if err != nil {
			return
		}
		for _, r := range md.RedirectURIs {
			if checkRedirectURI(r) != nil || strings.Contains(r, "#") {
				t.Fatalf("accepted redirect URI %q", r)
			}
		}
	})
}
