/**
 * Stable rejection codes. The values equal those of Python's authz.errors.Reason and the Go
 * SDK's Reason, so services and dashboards match on the same strings in every language.
 */
export const Reason = Object.freeze({
  TOKEN_MISSING: "token_missing",
  TOKEN_MALFORMED: "token_malformed",
  TOKEN_HEADER_INVALID: "token_header_invalid",
  TOKEN_ALG_UNSUPPORTED: "token_alg_unsupported",
  TOKEN_KID_UNKNOWN: "token_kid_unknown",
  TOKEN_SIGNATURE_INVALID: "token_signature_invalid",
  TOKEN_CLAIMS_INVALID: "token_claims_invalid",
  TOKEN_EXPIRED: "token_expired",
  TOKEN_NOT_YET_VALID: "token_not_yet_valid",
  TOKEN_AUDIENCE_MISMATCH: "token_audience_mismatch",
  TOKEN_ISSUER_MISMATCH: "token_issuer_mismatch",
  TOKEN_TTL_EXCEEDED: "token_ttl_exceeded",
  RECEIPT_MISSING: "receipt_missing",
  RECEIPT_MALFORMED: "receipt_malformed",
  RECEIPT_HEADER_INVALID: "receipt_header_invalid",
  RECEIPT_ALG_UNSUPPORTED: "receipt_alg_unsupported",
  RECEIPT_KID_UNKNOWN: "receipt_kid_unknown",
  RECEIPT_SIGNATURE_INVALID: "receipt_signature_invalid",
  RECEIPT_MISMATCH: "receipt_mismatch",
});

/**
 * A rejected token or receipt. Send `reason` to the caller and keep `detail` in the server
 * log: the detail can describe how a forged token failed, which helps an attacker.
 */
export class VerifyError extends Error {
  /**
   * @param {string} reason one of the Reason values
   * @param {string} detail what exactly failed
   */
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.name = "VerifyError";
    this.reason = reason;
    this.detail = detail;
  }
}

/**
 * A JWKS document that KeySet.fromJwks rejects. It is a configuration error, not a rejection
 * of untrusted input, so it carries no reason code.
 */
export class KeySetError extends Error {
  /**
   * @param {number} index position of the offending key in "keys", or -1 for the document
   * @param {string} detail what was wrong with it
   */
  constructor(index, detail) {
    super(index < 0 ? `invalid JWKS: ${detail}` : `invalid JWKS key ${index}: ${detail}`);
    this.name = "KeySetError";
    this.index = index;
    this.detail = detail;
  }
}
