package ztmint

import "fmt"

// Reason is a stable rejection code. The values equal those of Python's authz.errors.Reason,
// so services, dashboards and all three SDKs match on the same strings.
type Reason string

// Reason codes that VerifyToken and VerifyReceipt return.
const (
	TokenMissing            Reason = "token_missing"
	TokenMalformed          Reason = "token_malformed"
	TokenHeaderInvalid      Reason = "token_header_invalid"
	TokenAlgUnsupported     Reason = "token_alg_unsupported"
	TokenKidUnknown         Reason = "token_kid_unknown"
	TokenSignatureInvalid   Reason = "token_signature_invalid"
	TokenClaimsInvalid      Reason = "token_claims_invalid"
	TokenExpired            Reason = "token_expired"
	TokenNotYetValid        Reason = "token_not_yet_valid"
	TokenAudienceMismatch   Reason = "token_audience_mismatch"
	TokenIssuerMismatch     Reason = "token_issuer_mismatch"
	TokenTTLExceeded        Reason = "token_ttl_exceeded"
	ReceiptMissing          Reason = "receipt_missing"
	ReceiptMalformed        Reason = "receipt_malformed"
	ReceiptHeaderInvalid    Reason = "receipt_header_invalid"
	ReceiptAlgUnsupported   Reason = "receipt_alg_unsupported"
	ReceiptKidUnknown       Reason = "receipt_kid_unknown"
	ReceiptSignatureInvalid Reason = "receipt_signature_invalid"
	ReceiptMismatch         Reason = "receipt_mismatch"
)

// Error reports a rejected token or receipt. Send Reason to the caller and keep Detail in the
// server log: Detail can describe how a forged token failed, which helps an attacker.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string {
	return string(e.Reason) + ": " + e.Detail
}

func reject(reason Reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// KeySetError reports a JWKS document that NewKeySet rejects. It is a configuration error,
// not a rejection of untrusted input, so it carries no Reason.
type KeySetError struct {
	Index  int // position of the offending key in "keys", or -1 for the document itself
	Detail string
}

func (e *KeySetError) Error() string {
	if e.Index < 0 {
		return "invalid JWKS: " + e.Detail
	}
	return fmt.Sprintf("invalid JWKS key %d: %s", e.Index, e.Detail)
}
