import crypto from "node:crypto";
import { KeySetError } from "./errors.js";
import { checkEd25519PublicKey } from "./ed25519strict.js";
import { decodeSegment, parseObject } from "./jose.js";

const OKP_MEMBERS = ["kty", "crv", "x", "kid", "alg", "use"];
const EC_MEMBERS = ["kty", "crv", "x", "y", "kid", "alg", "use"];

/**
 * The public keys of a JWKS document (RFC 7517 section 5): Ed25519 group keys that sign
 * tokens and P-256 receipt keys that sign receipts, each pinned by its exact kid.
 */
export class KeySet {
  /** @private */
  constructor() {
    /** @type {Map<string, crypto.KeyObject>} */
    this.groupKeys = new Map();
    /** @type {Map<string, crypto.KeyObject>} */
    this.receiptKeys = new Map();
  }

  /**
   * Load a JWKS document such as the mint's /.well-known/jwks.json, given as text, bytes or
   * an already parsed object.
   *
   * The whole document is rejected when any key breaks one of these rules:
   * - kty OKP with crv Ed25519 and alg "EdDSA" (RFC 8037 section 2), or kty EC with crv
   *   P-256 and alg "ES256" (RFC 7518 section 6.2);
   * - no members other than kty, crv, x, y, kid, alg and use, so private members such as d
   *   are rejected;
   * - a kid that is a non-empty string and unique, and use "sig" when use is present;
   * - a group key that is a canonical Ed25519 point of prime order and whose kid is its
   *   RFC 7638 thumbprint, or a receipt key that is a point on P-256.
   *
   * Skipping keys it does not understand would let a verifier run with another key set than
   * the one the mint published.
   *
   * @param {string | Uint8Array | object} jwks
   * @returns {KeySet}
   * @throws {KeySetError}
   */
  static fromJwks(jwks) {
    const document =
      typeof jwks === "object" && !(jwks instanceof Uint8Array) ? jwks : parseJwks(jwks);
    if (!Array.isArray(document?.keys)) {
      throw new KeySetError(-1, '"keys" must be an array');
    }
    const set = new KeySet();
    document.keys.forEach((jwk, index) => {
      const problem =
        typeof jwk === "object" && jwk !== null && !Array.isArray(jwk)
          ? set.add(jwk)
          : "key is not a JSON object";
      if (problem !== "") throw new KeySetError(index, problem);
    });
    return set;
  }

  /** @private */
  add(jwk) {
    const kid = jwk.kid;
    if (typeof kid !== "string" || kid === "") return "kid must be a non-empty string";
    const name = JSON.stringify(kid);
    if (this.groupKeys.has(kid) || this.receiptKeys.has(kid))
      return `kid ${name} appears twice; kids must be unique`;
    if (Object.hasOwn(jwk, "use") && jwk.use !== "sig")
      return `key ${name} has use ${JSON.stringify(jwk.use)}, expected "sig"`;
    if (jwk.kty === "OKP") return this.addGroupKey(name, jwk);
    if (jwk.kty === "EC") return this.addReceiptKey(name, jwk);
    return `key ${name} has kty ${JSON.stringify(jwk.kty)}; expected OKP (Ed25519) or EC (P-256)`;
  }

  /** @private */
  addGroupKey(name, jwk) {
    const unexpected = Object.keys(jwk).find((member) => !OKP_MEMBERS.includes(member));
    if (unexpected !== undefined)
      return `group key ${name} has the unexpected member ${JSON.stringify(unexpected)}`;
    if (jwk.crv !== "Ed25519" || jwk.alg !== "EdDSA")
      return `group key ${name} must have crv Ed25519 and alg EdDSA`;
    const x = coordinate(jwk, "x");
    if (typeof x === "string") return x;
    const problem = checkEd25519PublicKey(x);
    if (problem !== "") return `group key ${name}: ${problem}`;
    const thumbprint = ed25519Thumbprint(jwk.x);
    if (thumbprint !== jwk.kid)
      return `group key ${name} does not match its RFC 7638 thumbprint ${thumbprint}`;
    this.groupKeys.set(
      jwk.kid,
      crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x }, format: "jwk" }),
    );
    return "";
  }

  /** @private */
  addReceiptKey(name, jwk) {
    const unexpected = Object.keys(jwk).find((member) => !EC_MEMBERS.includes(member));
    if (unexpected !== undefined)
      return `receipt key ${name} has the unexpected member ${JSON.stringify(unexpected)}`;
    if (jwk.crv !== "P-256" || jwk.alg !== "ES256")
      return `receipt key ${name} must have crv P-256 and alg ES256`;
    const x = coordinate(jwk, "x");
    if (typeof x === "string") return x;
    const y = coordinate(jwk, "y");
    if (typeof y === "string") return y;
    if (x.length !== 32 || y.length !== 32)
      return `receipt key ${name}: x and y must be 32 bytes each`;
    try {
      // createPublicKey rejects a point that is not on the curve.
      const key = crypto.createPublicKey({
        key: { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y },
        format: "jwk",
      });
      this.receiptKeys.set(jwk.kid, key);
    } catch (error) {
      return `receipt key ${name} is not a point on P-256: ${error.message}`;
    }
    return "";
  }
}

/**
 * Compute the RFC 7638 SHA-256 thumbprint of an OKP Ed25519 JWK: the required members in
 * lexicographic order without whitespace (RFC 8037 appendix A.3).
 */
function ed25519Thumbprint(x) {
  const canonical = `{"crv":"Ed25519","kty":"OKP","x":"${x}"}`;
  return crypto.createHash("sha256").update(canonical, "utf-8").digest("base64url");
}

function parseJwks(jwks) {
  const bytes = typeof jwks === "string" ? Buffer.from(jwks, "utf-8") : jwks;
  try {
    return parseObject(bytes, "jwks_invalid");
  } catch (error) {
    throw new KeySetError(-1, error.detail ?? error.message);
  }
}

function coordinate(jwk, name) {
  if (typeof jwk[name] !== "string") return `member "${name}" must be a base64url string`;
  try {
    return decodeSegment(jwk[name], "jwks_invalid");
  } catch (error) {
    return `member "${name}": ${error.detail}`;
  }
}
