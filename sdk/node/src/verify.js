import crypto from "node:crypto";
import { Reason, VerifyError } from "./errors.js";
import { verifyEd25519Strict } from "./ed25519strict.js";
import { decodeSegment, parseObject, safeInteger, splitCompact } from "./jose.js";

const ALLOWED_HEADER_MEMBERS = ["alg", "typ", "kid"];
// Limits on the compact serialization, equal to those of the Python verifier.
export const MAX_TOKEN_CHARS = 8192;
export const MAX_RECEIPT_CHARS = 2048;
// RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
const TOKEN_HEADER_RULES = {
  alg: "EdDSA",
  typ: "JWT",
  otherTyp: "kms-receipt+jwt",
  headerInvalid: Reason.TOKEN_HEADER_INVALID,
  algUnsupported: Reason.TOKEN_ALG_UNSUPPORTED,
};
const RECEIPT_HEADER_RULES = {
  alg: "ES256",
  typ: "kms-receipt+jwt",
  otherTyp: "JWT",
  headerInvalid: Reason.RECEIPT_HEADER_INVALID,
  algUnsupported: Reason.RECEIPT_ALG_UNSUPPORTED,
};
// Order n of the P-256 group (SEC 2 section 2.4.2).
const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/**
 * @typedef {object} TokenParams
 * @property {number} now current time, seconds since the epoch
 * @property {string} audience compared with aud exactly
 * @property {string} issuer compared with iss exactly
 * @property {number} maxTtl upper bound on exp - iat, in seconds
 * @property {number} leeway clock skew allowed on exp and nbf, in seconds
 */

/**
 * Verify a token: a compact JWS (RFC 7515) signed with EdDSA over Ed25519 (RFC 8037) by the
 * group key named by the exact kid, then its claims (RFC 7519 section 7.2).
 *
 * Checks run in this order, the same as the Python verifier's, and the first failure
 * decides the reason:
 * - empty input (token_missing); more than MAX_TOKEN_CHARS, non-ASCII, not three segments,
 *   non-canonical base64url or header JSON (token_malformed);
 * - header: typ of a receipt, then alg other than "EdDSA" (token_alg_unsupported), then
 *   members other than alg, typ and kid, typ other than "JWT", kid not a non-empty string;
 * - kid of no pinned group key (token_kid_unknown), strict Ed25519 (token_signature_invalid);
 * - claims JSON and types (token_claims_invalid): non-empty string iss, sub, aud and jti,
 *   scope as RFC 6749 scope tokens joined by single spaces, integer iat, nbf and exp from 0
 *   to 2^53 - 1 (the I-JSON range);
 * - iss, aud, exp after iat and nbf (token_claims_invalid), exp - iat <= maxTtl, exp, nbf,
 *   and iat not in the future (token_not_yet_valid), with leeway on the time checks.
 *
 * Security: a token is valid only together with its receipt; call verifyReceipt as well.
 *
 * @param {string} token
 * @param {import("./keys.js").KeySet} keys
 * @param {TokenParams} params
 * @returns {{iss: string, sub: string, aud: string, scope: string, iat: number, nbf: number,
 *   exp: number, jti: string, claims: Record<string, unknown>}}
 * @throws {VerifyError}
 */
export function verifyToken(token, keys, params) {
  if (token === "") {
    throw new VerifyError(Reason.TOKEN_MISSING, "no token was presented");
  }
  const compact = decodeCompact(token, MAX_TOKEN_CHARS, Reason.TOKEN_MALFORMED);
  checkHeader(compact.header, TOKEN_HEADER_RULES);
  const kid = compact.header.kid;
  const publicKey = keys.groupKeys.get(kid);
  if (publicKey === undefined) {
    throw new VerifyError(
      Reason.TOKEN_KID_UNKNOWN,
      `no Ed25519 group key has kid ${JSON.stringify(kid)}`,
    );
  }

  if (!verifyEd25519Strict(publicKey, compact.signingInput, compact.signature)) {
    throw new VerifyError(
      Reason.TOKEN_SIGNATURE_INVALID,
      `Ed25519 signature does not verify under kid ${JSON.stringify(kid)}`,
    );
  }

  const claims = readClaims(parseObject(compact.payload, Reason.TOKEN_CLAIMS_INVALID));
  checkClaims(claims, params);
  return claims;
}

/**
 * Split a compact JWS (RFC 7515 section 7.1) and decode its segments.
 *
 * Security: the header and payload it returns are unverified. Only the header may be read
 * before the signature check, and only to choose among pinned keys.
 */
function decodeCompact(text, maxChars, malformed) {
  if (typeof text !== "string") throw new VerifyError(malformed, "compact JWS must be a string");
  if (text.length > maxChars) {
    throw new VerifyError(malformed, `compact JWS is ${text.length} characters, limit ${maxChars}`);
  }
  if (!/^[\x00-\x7f]*$/.test(text))
    throw new VerifyError(malformed, "compact JWS contains non-ASCII characters");
  const [headerSegment, payloadSegment, signatureSegment] = splitCompact(text, malformed);
  const header = parseObject(decodeSegment(headerSegment, malformed), malformed);
  return {
    header,
    payload: decodeSegment(payloadSegment, malformed),
    signature: decodeSegment(signatureSegment, malformed),
    signingInput: Buffer.from(`${headerSegment}.${payloadSegment}`, "ascii"),
  };
}

/**
 * Apply the header rules. The other format's typ is checked first, so a receipt presented
 * as a token (or the reverse) is named as such. Members other than alg, typ and kid are
 * rejected, which covers jwk, jku, x5u and x5c (a key chosen by the sender), crit, zip, cty
 * and b64.
 */
function checkHeader(header, rules) {
  if (header.typ === rules.otherTyp) {
    throw new VerifyError(
      rules.headerInvalid,
      `typ "${rules.otherTyp}" belongs to the other format`,
    );
  }
  if (header.alg !== rules.alg) {
    throw new VerifyError(
      rules.algUnsupported,
      `alg ${describe(header.alg)} is not accepted, expected "${rules.alg}"`,
    );
  }
  const unexpected = Object.keys(header).find((name) => !ALLOWED_HEADER_MEMBERS.includes(name));
  if (unexpected !== undefined) {
    throw new VerifyError(
      rules.headerInvalid,
      `header member ${JSON.stringify(unexpected)} is not accepted; expected only alg, typ, kid`,
    );
  }
  if (header.typ !== rules.typ) {
    throw new VerifyError(rules.headerInvalid, `typ ${describe(header.typ)} is not "${rules.typ}"`);
  }
  if (typeof header.kid !== "string" || header.kid === "") {
    throw new VerifyError(rules.headerInvalid, "kid is missing or not a non-empty string");
  }
}

function describe(value) {
  return typeof value === "string" ? JSON.stringify(value) : typeof value;
}

function readClaims(claimSet) {
  const invalid = Reason.TOKEN_CLAIMS_INVALID;
  if (Object.hasOwn(claimSet, "aud") && typeof claimSet.aud !== "string") {
    throw new VerifyError(invalid, 'claim "aud" must be one string, not a list');
  }
  if (typeof claimSet.scope !== "string") {
    throw new VerifyError(invalid, 'claim "scope" must be a space-separated string');
  }
  if (claimSet.scope !== "" && !claimSet.scope.split(" ").every((item) => SCOPE_TOKEN.test(item))) {
    throw new VerifyError(invalid, 'claim "scope" must be scope tokens separated by single spaces');
  }
  const claims = { scope: claimSet.scope, claims: claimSet };
  for (const name of ["iss", "sub", "aud", "jti"]) {
    if (typeof claimSet[name] !== "string" || claimSet[name] === "") {
      throw new VerifyError(invalid, `claim "${name}" must be a non-empty string`);
    }
    claims[name] = claimSet[name];
  }
  for (const name of ["iat", "nbf", "exp"]) {
    const value = safeInteger(claimSet[name]);
    if (value === undefined) {
      throw new VerifyError(
        invalid,
        `claim "${name}" must be an integer literal from 0 to 2^53 - 1`,
      );
    }
    claims[name] = value;
  }
  return claims;
}

function checkClaims(claims, { now, audience, issuer, maxTtl, leeway }) {
  if (claims.iss !== issuer) {
    throw new VerifyError(
      Reason.TOKEN_ISSUER_MISMATCH,
      `iss ${JSON.stringify(claims.iss)} is not the expected issuer`,
    );
  }
  if (claims.aud !== audience) {
    throw new VerifyError(
      Reason.TOKEN_AUDIENCE_MISMATCH,
      `aud ${JSON.stringify(claims.aud)} is not the expected audience`,
    );
  }
  if (claims.exp <= claims.iat || claims.exp <= claims.nbf) {
    throw new VerifyError(Reason.TOKEN_CLAIMS_INVALID, "exp must be after iat and nbf");
  }
  if (claims.exp - claims.iat > maxTtl) {
    throw new VerifyError(
      Reason.TOKEN_TTL_EXCEEDED,
      `exp - iat is ${claims.exp - claims.iat}s; the maximum is ${maxTtl}s`,
    );
  }
  // RFC 7519 section 4.1.4: the token must not be accepted on or after exp.
  if (now >= claims.exp + leeway) {
    throw new VerifyError(
      Reason.TOKEN_EXPIRED,
      `token expired at ${claims.exp}; now is ${now} with ${leeway}s leeway`,
    );
  }
  if (now < claims.nbf - leeway) {
    throw new VerifyError(
      Reason.TOKEN_NOT_YET_VALID,
      `nbf ${claims.nbf} is after now ${now} with ${leeway}s leeway`,
    );
  }
  if (now < claims.iat - leeway) {
    throw new VerifyError(
      Reason.TOKEN_NOT_YET_VALID,
      `iat ${claims.iat} is after now ${now} with ${leeway}s leeway`,
    );
  }
}

/**
 * Verify a receipt: a compact JWS signed with ES256 (RFC 7518 section 3.4, raw 64-byte
 * r || s with 0 < r, s < n) by the receipt key named by the exact kid, with header typ
 * "kms-receipt+jwt", whose payload binds this exact token: token_sha256 equals the base64url
 * SHA-256 of the token string and token_jti equals the token's jti.
 *
 * Header checks run in the order verifyToken documents, with the receipt_* reasons.
 *
 * Security: verifyReceipt reads the token's jti without checking the token's signature, so
 * call verifyToken on the same token first.
 *
 * Limitations: the receipt's iat is read but not compared with a clock, and retired receipt
 * keys with a grace period, which the Python verifier supports, are not modelled: a key is
 * in the KeySet or it is not.
 *
 * @param {string} receipt
 * @param {string} token
 * @param {import("./keys.js").KeySet} keys
 * @returns {{iss: string, iat: number, token_jti: string, token_sha256: string}}
 * @throws {VerifyError}
 */
export function verifyReceipt(receipt, token, keys) {
  if (receipt === "") {
    throw new VerifyError(Reason.RECEIPT_MISSING, "no receipt was presented");
  }
  const compact = decodeCompact(receipt, MAX_RECEIPT_CHARS, Reason.RECEIPT_MALFORMED);
  checkHeader(compact.header, RECEIPT_HEADER_RULES);
  const kid = compact.header.kid;
  const publicKey = keys.receiptKeys.get(kid);
  if (publicKey === undefined) {
    throw new VerifyError(
      Reason.RECEIPT_KID_UNKNOWN,
      `no P-256 receipt key has kid ${JSON.stringify(kid)}`,
    );
  }

  if (!verifyES256(publicKey, compact.signingInput, compact.signature)) {
    throw new VerifyError(
      Reason.RECEIPT_SIGNATURE_INVALID,
      `ES256 signature does not verify under kid ${JSON.stringify(kid)}`,
    );
  }

  const members = readReceiptMembers(parseObject(compact.payload, Reason.RECEIPT_MALFORMED));
  checkBinding(members, token);
  return members;
}

/** Check a raw r || s signature, with the length and 0 < r, s < n rules stated explicitly. */
function verifyES256(publicKey, message, signature) {
  if (signature.length !== 64) return false;
  const r = BigInt("0x" + signature.subarray(0, 32).toString("hex"));
  const s = BigInt("0x" + signature.subarray(32).toString("hex"));
  if (r === 0n || s === 0n || r >= P256_ORDER || s >= P256_ORDER) return false;
  return crypto.verify("sha256", message, { key: publicKey, dsaEncoding: "ieee-p1363" }, signature);
}

function readReceiptMembers(members) {
  const receipt = {};
  for (const name of ["iss", "token_jti", "token_sha256"]) {
    if (typeof members[name] !== "string" || members[name] === "") {
      throw new VerifyError(
        Reason.RECEIPT_MALFORMED,
        `receipt member "${name}" must be a non-empty string`,
      );
    }
    receipt[name] = members[name];
  }
  receipt.iat = safeInteger(members.iat);
  if (receipt.iat === undefined) {
    throw new VerifyError(
      Reason.RECEIPT_MALFORMED,
      'receipt member "iat" must be an integer literal',
    );
  }
  return receipt;
}

function checkBinding(receipt, token) {
  const expected = crypto.createHash("sha256").update(token, "utf-8").digest();
  const bound = decodeSegment(receipt.token_sha256, Reason.RECEIPT_MALFORMED);
  if (bound.length !== expected.length || !crypto.timingSafeEqual(bound, expected)) {
    throw new VerifyError(
      Reason.RECEIPT_MISMATCH,
      "receipt token_sha256 does not match the SHA-256 of the token",
    );
  }
  const jti = tokenJtiUnverified(token);
  if (receipt.token_jti !== jti) {
    throw new VerifyError(
      Reason.RECEIPT_MISMATCH,
      "receipt token_jti does not match the token's jti",
    );
  }
}

/** Read the jti claim of a token without checking its signature. */
function tokenJtiUnverified(token) {
  const [, payloadSegment] = splitCompact(token, Reason.TOKEN_MALFORMED);
  const claimSet = parseObject(
    decodeSegment(payloadSegment, Reason.TOKEN_MALFORMED),
    Reason.TOKEN_MALFORMED,
  );
  if (typeof claimSet.jti !== "string") {
    throw new VerifyError(Reason.TOKEN_CLAIMS_INVALID, 'claim "jti" must be a string');
  }
  return claimSet.jti;
}
