package server

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

func mint(t *testing.T, key ed25519.PrivateKey, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// JWTs are scoped to databases and access, and expire; static tokens keep
// working beside them.
func TestJWTScopes(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	// The key file as openssl writes it.
	der, _ := x509.MarshalPKIXPublicKey(pub)
	keyFile := filepath.Join(t.TempDir(), "jwt.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	keys, err := LoadJWTKeys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Config{JWTKeys: keys, AuthTokens: []string{"static"}, Databases: []string{"a", "b", "c"}})
	exp := time.Now().Add(time.Hour).Unix()
	tokens := map[string]string{
		"rw-a":     mint(t, priv, jwt.MapClaims{"exp": exp, "id": "a"}),
		"ro-a":     mint(t, priv, jwt.MapClaims{"exp": exp, "id": "a", "a": "ro"}),
		"rw-all":   mint(t, priv, jwt.MapClaims{"exp": exp, "a": "rw"}),
		"p":        mint(t, priv, jwt.MapClaims{"exp": exp, "p": map[string]any{"rw": map[string]any{"ns": []string{"a"}}, "ro": map[string]any{"ns": []string{"b"}}}}),
		"expired":  mint(t, priv, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix(), "id": "a"}),
		"no-exp":   mint(t, priv, jwt.MapClaims{"id": "a"}),
		"other":    mint(t, other, jwt.MapClaims{"exp": exp, "id": "a"}),
		"not-yet":  mint(t, priv, jwt.MapClaims{"exp": exp, "nbf": time.Now().Add(time.Hour).Unix()}),
		"hs256":    hs256(t, pub, jwt.MapClaims{"exp": exp}),
		"bad-a":    mint(t, priv, jwt.MapClaims{"exp": exp, "a": "admin"}),
		"static":   "static",
		"garbage":  "a.b.c",
		"no token": "",
	}
	push, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{batch(step("CREATE TABLE IF NOT EXISTS t(x)", nil))}})
	pull := pullBody(t, &syncpb.PullUpdatesReqProtoBody{})
	for _, c := range []struct {
		token, db  string
		pull, push int
	}{
		{"rw-a", "a", 200, 200}, {"rw-a", "b", 403, 403},
		{"ro-a", "a", 200, 403}, {"ro-a", "c", 403, 403},
		{"rw-all", "b", 200, 200}, {"rw-all", "c", 200, 200},
		{"p", "a", 200, 200}, {"p", "b", 200, 403}, {"p", "c", 403, 403},
		{"expired", "a", 401, 401}, {"no-exp", "a", 401, 401}, {"other", "a", 401, 401},
		{"not-yet", "a", 401, 401}, {"hs256", "a", 401, 401}, {"bad-a", "a", 401, 401},
		{"static", "c", 200, 200}, {"garbage", "a", 401, 401}, {"no token", "a", 401, 401},
	} {
		if s, b := post(t, ts.dbURL(c.db)+"/pull-updates", "application/protobuf", tokens[c.token], pull); s != c.pull {
			t.Errorf("%s on %s: pull %d %s, want %d", c.token, c.db, s, b, c.pull)
		}
		if s, b := post(t, ts.dbURL(c.db)+"/v2/pipeline", "application/json", tokens[c.token], push); s != c.push {
			t.Errorf("%s on %s: push %d %s, want %d", c.token, c.db, s, b, c.push)
		}
	}
	// A token scoped to one database cannot create another.
	if s, _ := post(t, ts.dbURL("new")+"/pull-updates", "application/protobuf", tokens["rw-a"], pull); s != http.StatusForbidden {
		t.Errorf("rw-a creating a database: %d", s)
	}
	// The expiry is what the client is told.
	if _, b := post(t, ts.dbURL("a")+"/pull-updates", "application/protobuf", tokens["expired"], pull); string(b) != "the token has expired\n" {
		t.Errorf("expired token: %q", b)
	}
}

// hs256 signs claims with HMAC keyed by the public key: the algorithm
// confusion attack, which must be refused.
func hs256(t *testing.T, pub ed25519.PublicKey, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
