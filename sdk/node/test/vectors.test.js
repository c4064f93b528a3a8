import assert from "node:assert/strict";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { KeySet, KeySetError, VerifyError, verifyReceipt, verifyToken } from "../src/index.js";
import { checkEd25519PublicKey, verifyEd25519Strict } from "../src/ed25519strict.js";

const vectors = JSON.parse(
  readFileSync(new URL("../../vectors/tokens.json", import.meta.url), "utf-8"),
);
const keys = KeySet.fromJwks(JSON.stringify(vectors.jwks));
const params = {
  now: vectors.params.now,
  audience: vectors.params.audience,
  issuer: vectors.params.issuer,
  maxTtl: vectors.params.max_ttl,
  leeway: vectors.params.leeway,
};

function assertRefused(action, reason) {
  assert.throws(action, (error) => {
    assert.ok(error instanceof VerifyError, `expected VerifyError, got ${error}`);
    assert.equal(error.reason, reason, error.detail);
    return true;
  });
}

describe("verifyToken over the shared vectors", () => {
  for (const vector of vectors.token_cases) {
    test(vector.name, () => {
      if (vector.expect.result === "error") {
        assertRefused(() => verifyToken(vector.token, keys, params), vector.expect.reason);
        return;
      }
      const claims = verifyToken(vector.token, keys, params);
      assert.equal(claims.sub, vector.expect.sub);
      assert.equal(claims.scope, vector.expect.scope);
      assert.equal(claims.jti, vector.expect.jti);
    });
  }
});

describe("verifyReceipt over the shared vectors", () => {
  for (const vector of vectors.receipt_cases) {
    test(vector.name, () => {
      if (vector.expect.result === "error") {
        assertRefused(
          () => verifyReceipt(vector.receipt, vector.token, keys),
          vector.expect.reason,
        );
        return;
      }
      const receipt = verifyReceipt(vector.receipt, vector.token, keys);
      assert.equal(receipt.token_jti, vector.expect.token_jti);
    });
  }
});

describe("KeySet.fromJwks over the shared vectors", () => {
  for (const vector of vectors.key_cases) {
    test(vector.name, () => {
      assert.throws(() => KeySet.fromJwks(JSON.stringify(vector.jwks)), KeySetError);
    });
  }
});

describe("node:crypto Ed25519 alone", () => {
  const groupJwk = vectors.jwks.keys.find((key) => key.kty === "OKP");
  const publicKey = crypto.createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: groupJwk.x },
    format: "jwk",
  });
  const signatureOf = (name) => {
    const [header, payload, signature] = vectors.token_cases
      .find((c) => c.name === name)
      .token.split(".");
    return {
      message: Buffer.from(`${header}.${payload}`),
      signature: Buffer.from(signature, "base64url"),
    };
  };

  test("crypto.verify accepts R = identity, so the explicit check is needed", () => {
    const { message, signature } = signatureOf("signature_r_identity");
    assert.equal(crypto.verify(null, message, publicKey, signature), true);
    assert.equal(verifyEd25519Strict(publicKey, message, signature), false);
  });

  test("crypto.verify rejects S + L by itself", () => {
    const { message, signature } = signatureOf("signature_s_plus_l");
    assert.equal(crypto.verify(null, message, publicKey, signature), false);
  });
});

describe("checkEd25519PublicKey", () => {
  const firstX = (name) =>
    Buffer.from(vectors.key_cases.find((c) => c.name === name).jwks.keys[0].x, "base64url");

  test("rejects a key outside the prime-order subgroup", () => {
    assert.match(checkEd25519PublicKey(firstX("ed25519_mixed_order")), /prime-order subgroup/);
  });

  test("rejects a y with no x", () => {
    assert.match(checkEd25519PublicKey(firstX("ed25519_off_curve")), /not a point/);
  });

  test("accepts the group key", () => {
    const groupJwk = vectors.jwks.keys.find((key) => key.kty === "OKP");
    assert.equal(checkEd25519PublicKey(Buffer.from(groupJwk.x, "base64url")), "");
  });
});

test("VerifyError message names the reason", () => {
  const error = new VerifyError("token_expired", "token expired at 10");
  assert.equal(error.message, "token_expired: token expired at 10");
});
