package ztmint

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// KeySet holds the public keys of a JWKS document (RFC 7517 section 5): Ed25519 group keys
// that sign tokens and P-256 receipt keys that sign receipts, each pinned by its exact kid.
type KeySet struct {
	groupKeys   map[string]ed25519.PublicKey
	receiptKeys map[string]*ecdsa.PublicKey
}

// NewKeySet loads a JWKS document such as the mint's /.well-known/jwks.json.
//
// It rejects the whole document when any key breaks one of these rules:
//   - kty OKP with crv Ed25519 and alg "EdDSA" (RFC 8037 section 2), or kty EC with crv P-256
//     and alg "ES256" (RFC 7518 section 6.2);
//   - no members other than kty, crv, x, y, kid, alg and use, so private members such as d
//     are rejected;
//   - a kid that is a non-empty string and unique, and use "sig" when use is present;
//   - a group key that is a canonical Ed25519 point of prime order and whose kid is its
//     RFC 7638 thumbprint, or a receipt key that is a point on P-256.
//
// Skipping keys it does not understand would let a verifier run with another key set than
// the one the mint published.
func NewKeySet(jwks []byte) (*KeySet, error) {
	document, err := parseObject(jwks, TokenMalformed)
	if err != nil {
		return nil, &KeySetError{Index: -1, Detail: err.(*Error).Detail}
	}
	keys, ok := document["keys"].([]any)
	if !ok {
		return nil, &KeySetError{Index: -1, Detail: `"keys" must be an array`}
	}
	set := &KeySet{groupKeys: map[string]ed25519.PublicKey{}, receiptKeys: map[string]*ecdsa.PublicKey{}}
	for index, entry := range keys {
		jwk, ok := entry.(map[string]any)
		if !ok {
			return nil, &KeySetError{Index: index, Detail: "key is not a JSON object"}
		}
		if detail := set.add(jwk); detail != "" {
			return nil, &KeySetError{Index: index, Detail: detail}
		}
	}
	return set, nil
}

var (
	okpMembers = map[string]bool{"kty": true, "crv": true, "x": true, "kid": true, "alg": true, "use": true}
	ecMembers  = map[string]bool{"kty": true, "crv": true, "x": true, "y": true, "kid": true, "alg": true, "use": true}
)

func (set *KeySet) add(jwk map[string]any) string {
	kid, ok := jwk["kid"].(string)
	if !ok || kid == "" {
		return "kid must be a non-empty string"
	}
	_, isGroupKey := set.groupKeys[kid]
	_, isReceiptKey := set.receiptKeys[kid]
	if isGroupKey || isReceiptKey {
		return fmt.Sprintf("kid %q appears twice; kids must be unique", kid)
	}
	if use, present := jwk["use"]; present && use != "sig" {
		return fmt.Sprintf("key %q has use %v, expected \"sig\"", kid, use)
	}
	switch jwk["kty"] {
	case "OKP":
		return set.addGroupKey(kid, jwk)
	case "EC":
		return set.addReceiptKey(kid, jwk)
	}
	return fmt.Sprintf("key %q has kty %v; expected OKP (Ed25519) or EC (P-256)", kid, jwk["kty"])
}

func unexpectedMember(jwk map[string]any, allowed map[string]bool) string {
	for name := range jwk {
		if !allowed[name] {
			return name
		}
	}
	return ""
}

func (set *KeySet) addGroupKey(kid string, jwk map[string]any) string {
	if name := unexpectedMember(jwk, okpMembers); name != "" {
		return fmt.Sprintf("group key %q has the unexpected member %q", kid, name)
	}
	if jwk["crv"] != "Ed25519" || jwk["alg"] != "EdDSA" {
		return fmt.Sprintf("group key %q must have crv Ed25519 and alg EdDSA", kid)
	}
	x, detail := coordinate(jwk, "x")
	if detail != "" {
		return detail
	}
	if problem := checkEd25519PublicKey(x); problem != "" {
		return fmt.Sprintf("group key %q: %s", kid, problem)
	}
	if thumbprint := ed25519Thumbprint(jwk["x"].(string)); thumbprint != kid {
		return fmt.Sprintf("group key %q does not match its RFC 7638 thumbprint %q", kid, thumbprint)
	}
	set.groupKeys[kid] = ed25519.PublicKey(x)
	return ""
}

// ed25519Thumbprint computes the RFC 7638 SHA-256 thumbprint of an OKP Ed25519 JWK: the
// required members in lexicographic order, without whitespace (RFC 8037 appendix A.3).
func ed25519Thumbprint(x string) string {
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`
	digest := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(digest[:])
}

func (set *KeySet) addReceiptKey(kid string, jwk map[string]any) string {
	if name := unexpectedMember(jwk, ecMembers); name != "" {
		return fmt.Sprintf("receipt key %q has the unexpected member %q", kid, name)
	}
	if jwk["crv"] != "P-256" || jwk["alg"] != "ES256" {
		return fmt.Sprintf("receipt key %q must have crv P-256 and alg ES256", kid)
	}
	x, detail := coordinate(jwk, "x")
	if detail != "" {
		return detail
	}
	y, detail := coordinate(jwk, "y")
	if detail != "" {
		return detail
	}
	if len(x) != 32 || len(y) != 32 {
		return fmt.Sprintf("receipt key %q: x and y must be 32 bytes each", kid)
	}
	point := append(append([]byte{4}, x...), y...)
	publicKey, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return fmt.Sprintf("receipt key %q is not a point on P-256: %v", kid, err)
	}
	set.receiptKeys[kid] = publicKey
	return ""
}

func coordinate(jwk map[string]any, name string) ([]byte, string) {
	text, ok := jwk[name].(string)
	if !ok {
		return nil, fmt.Sprintf("member %q must be a base64url string", name)
	}
	value, err := decodeSegment(text, TokenMalformed)
	if err != nil {
		return nil, fmt.Sprintf("member %q: %s", name, err.(*Error).Detail)
	}
	return value, ""
}
