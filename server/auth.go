package server

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Authentication. A request carries "Authorization: Bearer TOKEN". The
// token is one of the static tokens (Config.AuthTokens: read-write on every
// database; Config.ReadTokens: read-only on every database) or, with
// Config.JWTKeys, a JWT signed with Ed25519 (EdDSA) whose claims name the
// access, as sqld and Turso do:
//
//	exp  expiry (seconds since 1970; required), nbf/iat checked if present
//	a    "rw" (default) or "ro": the access to the database named by id
//	id   the database (namespace) the token is for; absent: every database
//	p    finer permissions, instead of a/id: {"rw": {"ns": ["db1"]},
//	     "ro": {"ns": ["db2", "db3"]}}
//
// With no static token and no key configured, every request may read and
// write every database.

// access is what a credential allows on one database.
type access int

const (
	noAccess access = iota
	readAccess
	writeAccess
)

// grant is what a request's credential allows.
type grant struct {
	all access            // on every database
	dbs map[string]access // on these, if more
}

func (g grant) on(db string) access { return max(g.all, g.dbs[db]) }

// ErrAuth wraps why a credential was refused.
var ErrAuth = errors.New("authorization failed")

// authenticate works out the grant of r's credential.
func (s *Server) authenticate(r *http.Request) (grant, error) {
	if len(s.cfg.AuthTokens) == 0 && len(s.cfg.ReadTokens) == 0 && len(s.cfg.JWTKeys) == 0 {
		return grant{all: writeAccess}, nil
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return grant{}, fmt.Errorf("%w: authorization required: send Authorization: Bearer <token>", ErrAuth)
	}
	return s.tokenGrant(tok)
}

// tokenGrant is what the token tok grants (from a header, or from the
// hello message of Hrana over WebSocket).
func (s *Server) tokenGrant(tok string) (grant, error) {
	if len(s.cfg.AuthTokens) == 0 && len(s.cfg.ReadTokens) == 0 && len(s.cfg.JWTKeys) == 0 {
		return grant{all: writeAccess}, nil
	}
	for _, t := range s.cfg.AuthTokens {
		if constantTimeEqual(t, tok) {
			return grant{all: writeAccess}, nil
		}
	}
	for _, t := range s.cfg.ReadTokens {
		if constantTimeEqual(t, tok) {
			return grant{all: readAccess}, nil
		}
	}
	if len(s.cfg.JWTKeys) > 0 && strings.Count(tok, ".") == 2 {
		return s.jwtGrant(tok)
	}
	return grant{}, fmt.Errorf("%w: invalid token", ErrAuth)
}

// claims are the JWT claims syncdb reads (sqld's names).
type claims struct {
	jwt.RegisteredClaims
	Access string                `json:"a,omitempty"`
	DB     string                `json:"id,omitempty"`
	Perms  map[string]scopeClaim `json:"p,omitempty"`
}

type scopeClaim struct {
	Namespaces []string `json:"ns"`
}

var jwtParser = jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithExpirationRequired(), jwt.WithLeeway(30*time.Second))

func (s *Server) jwtGrant(tok string) (grant, error) {
	var c claims
	var err error
	for _, key := range s.cfg.JWTKeys {
		if _, err = jwtParser.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return key, nil }); err == nil {
			break
		}
		if !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			break // expired, malformed: another key will not help
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return grant{}, fmt.Errorf("%w: the token has expired", ErrAuth)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return grant{}, fmt.Errorf("%w: the token has no expiry (exp)", ErrAuth)
	case err != nil:
		return grant{}, fmt.Errorf("%w: invalid token", ErrAuth)
	}
	if c.Perms != nil {
		g := grant{dbs: map[string]access{}}
		for kind, sc := range c.Perms {
			level := noAccess
			switch kind {
			case "rw":
				level = writeAccess
			case "ro":
				level = readAccess
			}
			for _, ns := range sc.Namespaces {
				g.dbs[ns] = max(g.dbs[ns], level)
			}
		}
		return g, nil
	}
	level := writeAccess
	switch c.Access {
	case "", "rw":
	case "ro":
		level = readAccess
	default:
		return grant{}, fmt.Errorf("%w: unknown access %q in the token (want ro or rw)", ErrAuth, c.Access)
	}
	if c.DB == "" {
		return grant{all: level}, nil
	}
	return grant{dbs: map[string]access{c.DB: level}}, nil
}

// allowed checks that r may use database db (write: push), writing the
// error response if not. It returns the grant.
func (s *Server) allowed(w http.ResponseWriter, r *http.Request, db string, write bool) (grant, bool) {
	g, err := s.authenticate(r)
	if err != nil {
		httpError(w, http.StatusUnauthorized, "%s", strings.TrimPrefix(err.Error(), ErrAuth.Error()+": "))
		return g, false
	}
	switch a := g.on(db); {
	case a == noAccess:
		httpError(w, http.StatusForbidden, "this token is not valid for database %q", db)
		return g, false
	case write && a < writeAccess:
		httpError(w, http.StatusForbidden, "this token may pull but not push")
		return g, false
	}
	return g, true
}

// LoadJWTKeys reads Ed25519 public keys for Config.JWTKeys from a file: PEM
// blocks ("PUBLIC KEY", PKIX), or lines of base64 (standard or URL
// alphabet) of the raw 32-byte keys, as sqld accepts.
func LoadJWTKeys(path string) ([]ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []ed25519.PublicKey
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: a %T key; JWTs must be signed with Ed25519", path, k)
		}
		keys = append(keys, ek)
	}
	if len(keys) == 0 {
		for _, line := range strings.Fields(string(data)) {
			raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(line), "="))
			if err != nil || len(raw) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("%s: want PEM public keys or base64 Ed25519 keys (32 bytes)", path)
			}
			keys = append(keys, ed25519.PublicKey(raw))
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no key", path)
	}
	return keys, nil
}
