package ztmint

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"math/big"
	"regexp"
	"strings"
	"time"
)

// TokenParams are the checks that VerifyToken applies to the claims.
type TokenParams struct {
	Now      time.Time
	Audience string        // compared with aud exactly
	Issuer   string        // compared with iss exactly
	MaxTTL   time.Duration // upper bound on exp - iat
	Leeway   time.Duration // clock skew allowed on exp and nbf
}

// Claims are the verified claims of a token (RFC 7519 section 4.1).
type Claims struct {
	Issuer    string
	Subject   string
	Audience  string
	Scope     string // space-separated scopes
	IssuedAt  int64
	NotBefore int64
	Expiry    int64
	JTI       string
	All       map[string]any // every claim, numbers as json.Number
}

// ReceiptClaims are the verified members of a receipt payload.
type ReceiptClaims struct {
	Issuer      string
	IssuedAt    int64
	TokenJTI    string
	TokenSHA256 string
}

// Limits on the compact serialization, equal to those of the Python verifier.
const (
	MaxTokenChars   = 8192
	MaxReceiptChars = 2048
	tokenTyp        = "JWT"
	receiptTyp      = "kms-receipt+jwt"
)

var (
	allowedHeaderMembers = map[string]bool{"alg": true, "typ": true, "kid": true}
	// scopeToken is RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
	scopeToken = regexp.MustCompile(`\A[\x21\x23-\x5b\x5d-\x7e]+\z`)
)

// compactJWS is a compact JWS split and decoded, before any verification.
type compactJWS struct {
	header       map[string]any
	signingInput []byte
	payload      []byte
	signature    []byte
}

// headerRules names what a header must say and which reasons its failures carry.
type headerRules struct {
	alg, typ, otherTyp string
	headerInvalid      Reason
	algUnsupported     Reason
}

var (
	tokenHeaderRules = headerRules{
		alg: "EdDSA", typ: tokenTyp, otherTyp: receiptTyp,
		headerInvalid: TokenHeaderInvalid, algUnsupported: TokenAlgUnsupported,
	}
	receiptHeaderRules = headerRules{
		alg: "ES256", typ: receiptTyp, otherTyp: tokenTyp,
		headerInvalid: ReceiptHeaderInvalid, algUnsupported: ReceiptAlgUnsupported,
	}
)

// VerifyToken verifies a token: a compact JWS (RFC 7515) signed with EdDSA over Ed25519
// (RFC 8037) by the group key named by the exact kid, then its claims (RFC 7519 section 7.2).
//
// Checks run in this order, the same as the Python verifier's, and the first failure decides
// the Reason:
//   - empty input (token_missing); more than MaxTokenChars, non-ASCII, not three segments,
//     non-canonical base64url or header JSON (token_malformed);
//   - header: typ of a receipt, then alg other than "EdDSA" (token_alg_unsupported), then
//     members other than alg, typ and kid, typ other than "JWT", kid not a non-empty string;
//   - kid of no pinned group key (token_kid_unknown), strict Ed25519 (token_signature_invalid);
//   - claims JSON and types (token_claims_invalid): non-empty string iss, sub, aud and jti,
//     scope as RFC 6749 scope tokens joined by single spaces, integer iat, nbf and exp from
//     0 to 2^53 - 1 (the I-JSON range);
//   - iss, aud, exp after iat and nbf (token_claims_invalid), exp - iat <= MaxTTL, exp, nbf,
//     and iat not in the future (token_not_yet_valid), with Leeway on the time checks.
//
// Security: a token is valid only together with its receipt; call VerifyReceipt as well.
func VerifyToken(token string, keys *KeySet, params TokenParams) (*Claims, error) {
	if token == "" {
		return nil, reject(TokenMissing, "no token was presented")
	}
	compact, err := decodeCompact(token, MaxTokenChars, TokenMalformed)
	if err != nil {
		return nil, err
	}
	if err := checkHeader(compact.header, tokenHeaderRules); err != nil {
		return nil, err
	}
	kid := compact.header["kid"].(string)
	publicKey, known := keys.groupKeys[kid]
	if !known {
		return nil, reject(TokenKidUnknown, "no Ed25519 group key has kid %q", kid)
	}

	if !verifyEd25519Strict(publicKey, compact.signingInput, compact.signature) {
		return nil, reject(TokenSignatureInvalid, "Ed25519 signature does not verify under kid %q", kid)
	}

	claimSet, err := parseObject(compact.payload, TokenClaimsInvalid)
	if err != nil {
		return nil, err
	}
	claims, err := readClaims(claimSet)
	if err != nil {
		return nil, err
	}
	return claims, checkClaims(claims, params)
}

// decodeCompact splits a compact JWS (RFC 7515 section 7.1) and decodes its segments.
//
// Security: the header and payload it returns are unverified. Only the header may be read
// before the signature check, and only to choose among pinned keys.
func decodeCompact(text string, maxChars int, malformed Reason) (*compactJWS, error) {
	if len(text) > maxChars {
		return nil, reject(malformed, "compact JWS is %d characters, limit %d", len(text), maxChars)
	}
	for i := 0; i < len(text); i++ {
		if text[i] >= 0x80 {
			return nil, reject(malformed, "compact JWS contains non-ASCII characters")
		}
	}

	headerSegment, payloadSegment, signatureSegment, err := splitCompact(text, malformed)
	if err != nil {
		return nil, err
	}
	headerBytes, err := decodeSegment(headerSegment, malformed)
	if err != nil {
		return nil, err
	}
	header, err := parseObject(headerBytes, malformed)
	if err != nil {
		return nil, err
	}

	payload, err := decodeSegment(payloadSegment, malformed)
	if err != nil {
		return nil, err
	}
	signature, err := decodeSegment(signatureSegment, malformed)
	if err != nil {
		return nil, err
	}
	return &compactJWS{
		header:       header,
		signingInput: []byte(headerSegment + "." + payloadSegment),
		payload:      payload,
		signature:    signature,
	}, nil
}

// checkHeader applies the header rules. The other format's typ is checked first, so a
// receipt presented as a token (or the reverse) is named as such. Members other than alg,
// typ and kid are rejected, which covers jwk, jku, x5u and x5c (a key chosen by the sender),
// crit, zip, cty and b64.
func checkHeader(header map[string]any, rules headerRules) error {
	if header["typ"] == rules.otherTyp {
		return reject(rules.headerInvalid, "typ %q belongs to the other format", rules.otherTyp)
	}
	if header["alg"] != rules.alg {
		return reject(rules.algUnsupported, "alg %v is not accepted, expected %q", header["alg"], rules.alg)
	}
	for name := range header {
		if !allowedHeaderMembers[name] {
			return reject(rules.headerInvalid, "header member %q is not accepted; expected only alg, typ, kid", name)
		}
	}
	if header["typ"] != rules.typ {
		return reject(rules.headerInvalid, "typ %v is not %q", header["typ"], rules.typ)
	}
	if kid, ok := header["kid"].(string); !ok || kid == "" {
		return reject(rules.headerInvalid, "kid is missing or not a non-empty string")
	}
	return nil
}

func readClaims(claimSet map[string]any) (*Claims, error) {
	claims := &Claims{All: claimSet}
	if aud, present := claimSet["aud"]; present {
		if _, ok := aud.(string); !ok {
			return nil, reject(TokenClaimsInvalid, "claim \"aud\" must be one string, not a list")
		}
	}
	scope, ok := claimSet["scope"].(string)
	if !ok {
		return nil, reject(TokenClaimsInvalid, "claim \"scope\" must be a space-separated string")
	}
	if scope != "" {
		for _, item := range strings.Split(scope, " ") {
			if !scopeToken.MatchString(item) {
				return nil, reject(TokenClaimsInvalid, "claim \"scope\" must be scope tokens separated by single spaces")
			}
		}
	}
	claims.Scope = scope
	stringClaims := []struct {
		name   string
		target *string
	}{{"iss", &claims.Issuer}, {"sub", &claims.Subject}, {"aud", &claims.Audience}, {"jti", &claims.JTI}}
	for _, claim := range stringClaims {
		value, ok := claimSet[claim.name].(string)
		if !ok || value == "" {
			return nil, reject(TokenClaimsInvalid, "claim %q must be a non-empty string", claim.name)
		}
		*claim.target = value
	}
	integerClaims := []struct {
		name   string
		target *int64
	}{{"iat", &claims.IssuedAt}, {"nbf", &claims.NotBefore}, {"exp", &claims.Expiry}}
	for _, claim := range integerClaims {
		value, ok := safeInteger(claimSet[claim.name])
		if !ok {
			return nil, reject(TokenClaimsInvalid, "claim %q must be an integer literal from 0 to 2^53 - 1", claim.name)
		}
		*claim.target = value
	}
	return claims, nil
}

func checkClaims(claims *Claims, params TokenParams) error {
	now := params.Now.Unix()
	leeway := int64(params.Leeway / time.Second)
	maxTTL := int64(params.MaxTTL / time.Second)
	switch {
	case claims.Issuer != params.Issuer:
		return reject(TokenIssuerMismatch, "iss %q is not the expected issuer %q", claims.Issuer, params.Issuer)
	case claims.Audience != params.Audience:
		return reject(TokenAudienceMismatch, "aud %q is not the expected audience %q", claims.Audience, params.Audience)
	case claims.Expiry <= claims.IssuedAt || claims.Expiry <= claims.NotBefore:
		return reject(TokenClaimsInvalid, "exp must be after iat and nbf")
	case claims.Expiry-claims.IssuedAt > maxTTL:
		return reject(TokenTTLExceeded, "exp - iat is %ds; the maximum is %ds", claims.Expiry-claims.IssuedAt, maxTTL)
	// RFC 7519 section 4.1.4: the token must not be accepted on or after exp.
	case now >= claims.Expiry+leeway:
		return reject(TokenExpired, "token expired at %d; now is %d with %ds leeway", claims.Expiry, now, leeway)
	case now < claims.NotBefore-leeway:
		return reject(TokenNotYetValid, "nbf %d is after now %d with %ds leeway", claims.NotBefore, now, leeway)
	case now < claims.IssuedAt-leeway:
		return reject(TokenNotYetValid, "iat %d is after now %d with %ds leeway", claims.IssuedAt, now, leeway)
	}
	return nil
}

// p256Order is n, the order of the P-256 group (SEC 2 section 2.4.2).
var p256Order, _ = new(big.Int).SetString("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)

// VerifyReceipt verifies a receipt: a compact JWS signed with ES256 (RFC 7518 section 3.4,
// raw 64-byte r || s with 0 < r, s < n) by the receipt key named by the exact kid, with
// header typ "kms-receipt+jwt", whose payload binds this exact token: token_sha256 is the
// base64url SHA-256 of the token string and token_jti is the token's jti. Header checks run
// in the order VerifyToken documents, with the receipt_* reasons.
//
// Security: VerifyReceipt reads the token's jti without checking the token's signature, so
// call VerifyToken on the same token first.
//
// Limitations: the receipt's iat is read but not compared with a clock, and retired receipt
// keys with a grace period, which the Python verifier supports, are not modelled: a key is
// in the KeySet or it is not.
func VerifyReceipt(receipt, token string, keys *KeySet) (*ReceiptClaims, error) {
	if receipt == "" {
		return nil, reject(ReceiptMissing, "no receipt was presented")
	}
	compact, err := decodeCompact(receipt, MaxReceiptChars, ReceiptMalformed)
	if err != nil {
		return nil, err
	}
	if err := checkHeader(compact.header, receiptHeaderRules); err != nil {
		return nil, err
	}
	kid := compact.header["kid"].(string)
	publicKey, known := keys.receiptKeys[kid]
	if !known {
		return nil, reject(ReceiptKidUnknown, "no P-256 receipt key has kid %q", kid)
	}

	if !verifyES256(publicKey, compact.signingInput, compact.signature) {
		return nil, reject(ReceiptSignatureInvalid, "ES256 signature does not verify under kid %q", kid)
	}

	members, err := parseObject(compact.payload, ReceiptMalformed)
	if err != nil {
		return nil, err
	}
	claims, err := readReceiptClaims(members)
	if err != nil {
		return nil, err
	}
	return claims, checkBinding(claims, token)
}

// verifyES256 checks a raw r || s signature over SHA-256 of message. The explicit length and
// range checks make the rules visible; ecdsa.Verify also rejects r or s outside (0, n).
func verifyES256(publicKey *ecdsa.PublicKey, message, signature []byte) bool {
	if len(signature) != 64 {
		return false
	}
	r := new(big.Int).SetBytes(signature[:32])
	s := new(big.Int).SetBytes(signature[32:])
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(p256Order) >= 0 || s.Cmp(p256Order) >= 0 {
		return false
	}
	digest := sha256.Sum256(message)
	return ecdsa.Verify(publicKey, digest[:], r, s)
}

func readReceiptClaims(members map[string]any) (*ReceiptClaims, error) {
	claims := &ReceiptClaims{}
	for name, target := range map[string]*string{
		"iss": &claims.Issuer, "token_jti": &claims.TokenJTI, "token_sha256": &claims.TokenSHA256,
	} {
		value, ok := members[name].(string)
		if !ok || value == "" {
			return nil, reject(ReceiptMalformed, "receipt member %q must be a non-empty string", name)
		}
		*target = value
	}
	issuedAt, ok := safeInteger(members["iat"])
	if !ok {
		return nil, reject(ReceiptMalformed, "receipt member \"iat\" must be an integer literal")
	}
	claims.IssuedAt = issuedAt
	return claims, nil
}

func checkBinding(claims *ReceiptClaims, token string) error {
	digest := sha256.Sum256([]byte(token))
	bound, err := decodeSegment(claims.TokenSHA256, ReceiptMalformed)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(bound, digest[:]) != 1 {
		return reject(ReceiptMismatch, "receipt token_sha256 does not match the SHA-256 of the token")
	}
	jti, err := tokenJTIUnverified(token)
	if err != nil {
		return err
	}
	if claims.TokenJTI != jti {
		return reject(ReceiptMismatch, "receipt token_jti %q does not match the token's jti %q", claims.TokenJTI, jti)
	}
	return nil
}

// tokenJTIUnverified reads the jti claim of a token without checking its signature.
func tokenJTIUnverified(token string) (string, error) {
	_, payloadSegment, _, err := splitCompact(token, TokenMalformed)
	if err != nil {
		return "", err
	}
	payload, err := decodeSegment(payloadSegment, TokenMalformed)
	if err != nil {
		return "", err
	}
	claimSet, err := parseObject(payload, TokenMalformed)
	if err != nil {
		return "", err
	}
	jti, ok := claimSet["jti"].(string)
	if !ok {
		return "", reject(TokenClaimsInvalid, "claim \"jti\" must be a string")
	}
	return jti, nil
}
