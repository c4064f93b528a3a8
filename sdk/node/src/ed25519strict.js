import crypto from "node:crypto";

// Every 32-byte string that decodes to a point of order 1, 2, 4 or 8 on edwards25519, with
// the x sign bit (bit 255) cleared. The torsion subgroup has eight points with five distinct
// y values (1, -1, 0 and two order-8 values), whose canonical encodings come first. y = 0
// and y = 1 also have non-canonical encodings y + p, the last two. With the sign bit masked
// off this covers all 14 small-order encodings that libsodium's ge25519_has_small_order
// rejects, so comparing with the list is a complete test for small order.
const SMALL_ORDER_ENCODINGS = [
  "0100000000000000000000000000000000000000000000000000000000000000", // identity, order 1
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = -1, order 2
  "0000000000000000000000000000000000000000000000000000000000000000", // y = 0, order 4
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p, that is 0
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1, that is 1
].map((hex) => Buffer.from(hex, "hex"));

// Field prime, group order and curve constant d of edwards25519 (RFC 8032 section 5.1).
const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const D = mod(-121665n * modPow(121666n, P - 2n, P), P);

function mod(value, modulus) {
  const remainder = value % modulus;
  return remainder < 0n ? remainder + modulus : remainder;
}

function modPow(base, exponent, modulus) {
  let result = 1n;
  let power = mod(base, modulus);
  for (let rest = exponent; rest > 0n; rest >>= 1n) {
    if (rest & 1n) result = (result * power) % modulus;
    power = (power * power) % modulus;
  }
  return result;
}

function maskedY(encoding) {
  const masked = Buffer.from(encoding);
  masked[31] &= 0x7f;
  return masked;
}

function littleEndianInt(bytes) {
  return BigInt("0x" + (Buffer.from(bytes).reverse().toString("hex") || "0"));
}

function hasSmallOrder(encoding) {
  const masked = maskedY(encoding);
  return SMALL_ORDER_ENCODINGS.some((candidate) => candidate.equals(masked));
}

/** Tell whether the y coordinate is below p (RFC 8032 section 5.1.3, decoding step 1). */
function yIsCanonical(encoding) {
  return littleEndianInt(maskedY(encoding)) < P;
}

// A square root of -1 mod p, 2^((p-1)/4) (RFC 8032 section 5.1.3).
const SQRT_MINUS_ONE = modPow(2n, (P - 1n) / 4n, P);

/**
 * Decode a point as RFC 8032 section 5.1.3 does, or return undefined for y >= p, a y with no
 * matching x, and x = 0 with the sign bit set. Extended coordinates (X, Y, Z, T).
 */
function decodePoint(encoding) {
  if (!yIsCanonical(encoding)) return undefined;
  const sign = BigInt(encoding[31] >> 7);
  const y = littleEndianInt(maskedY(encoding));
  const ySquared = (y * y) % P;
  const xSquared = mod((ySquared - 1n) * modPow(D * ySquared + 1n, P - 2n, P), P);
  let x = modPow(xSquared, (P + 3n) / 8n, P);
  if ((x * x) % P !== xSquared) x = (x * SQRT_MINUS_ONE) % P;
  if ((x * x) % P !== xSquared) return undefined;
  if (x === 0n && sign === 1n) return undefined;
  if ((x & 1n) !== sign) x = P - x;
  return [x, y, 1n, (x * y) % P];
}

/** Add two points with the complete formula of RFC 8032 section 5.1.4; it also doubles. */
function addPoints([x1, y1, z1, t1], [x2, y2, z2, t2]) {
  const a = mod((y1 - x1) * (y2 - x2), P);
  const b = ((y1 + x1) * (y2 + x2)) % P;
  const c = (t1 * 2n * D * t2) % P;
  const d = (z1 * 2n * z2) % P;
  const e = mod(b - a, P);
  const f = mod(d - c, P);
  const g = (d + c) % P;
  const h = (b + a) % P;
  return [(e * f) % P, (g * h) % P, (f * g) % P, (e * h) % P];
}

/**
 * Tell whether [L]P is the identity, as libsodium's crypto_core_ed25519_is_valid_point
 * requires of a public key. Double-and-add, not constant time, which is fine
 * because it only handles public keys.
 */
function inPrimeOrderSubgroup(point) {
  let result = [0n, 1n, 1n, 0n];
  for (let bit = BigInt(L.toString(2).length - 1); bit >= 0n; bit -= 1n) {
    result = addPoints(result, result);
    if ((L >> bit) & 1n) result = addPoints(result, point);
  }
  return result[0] === 0n && result[1] === result[2];
}

/**
 * Return why an Ed25519 public key is unusable, or "" when it is fine. The rules are those
 * of libsodium's crypto_core_ed25519_is_valid_point: canonical, on the curve, not of small
 * order, in the prime-order subgroup. A small-order key lets a forger make one signature
 * that verifies for every message. A key with a small-order component makes cofactored and
 * cofactorless verifiers disagree on some signatures.
 *
 * @param {Buffer} key
 * @returns {string}
 */
export function checkEd25519PublicKey(key) {
  if (key.length !== 32) return "Ed25519 key must be 32 bytes";
  if (!yIsCanonical(key)) return "Ed25519 key is not canonically encoded (y >= p)";
  if (hasSmallOrder(key)) return "Ed25519 key is a small-order point";
  const point = decodePoint(key);
  if (point === undefined) return "Ed25519 key is not a point on edwards25519";
  if (!inPrimeOrderSubgroup(point)) return "Ed25519 key is outside the prime-order subgroup";
  return "";
}

/**
 * Verify an RFC 8032 Ed25519 signature and also reject S >= L, a non-canonical R and a
 * small-order R.
 *
 * Security: crypto.verify for Ed25519 (OpenSSL 3 in Node 20) accepts R = identity with
 * S = k*a, which libsodium and so the Python verifier reject. The explicit checks keep the
 * three SDKs in agreement; the tests show what crypto.verify does alone.
 *
 * @param {crypto.KeyObject} publicKey
 * @param {Buffer} message
 * @param {Buffer} signature
 * @returns {boolean}
 */
export function verifyEd25519Strict(publicKey, message, signature) {
  if (signature.length !== 64) return false;
  const r = signature.subarray(0, 32);
  const s = signature.subarray(32);
  if (littleEndianInt(s) >= L) return false;
  if (!yIsCanonical(r) || hasSmallOrder(r)) return false;
  return crypto.verify(null, message, publicKey, signature);
}
