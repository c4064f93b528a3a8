package ztmint

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"math/big"
)

// smallOrderEncodings lists every 32-byte string that decodes to a point of order 1, 2, 4 or
// 8 on edwards25519, with the x sign bit (bit 255) cleared. The torsion subgroup has exactly
// eight points with five distinct y values: 1, -1, 0 and two order-8 values. Their canonical
// encodings are the first five entries. y = 0 and y = 1 also have non-canonical encodings
// y + p, which are the last two. With the sign bit masked off this covers all 14 encodings
// that libsodium's ge25519_has_small_order rejects, so the comparison is a complete test for
// small order without point arithmetic.
var smallOrderEncodings = func() [][]byte {
	hexes := []string{
		"0100000000000000000000000000000000000000000000000000000000000000", // identity, order 1
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = -1, order 2
		"0000000000000000000000000000000000000000000000000000000000000000", // y = 0, order 4
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p, that is 0
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1, that is 1
	}
	encodings := make([][]byte, len(hexes))
	for i, text := range hexes {
		encodings[i], _ = hex.DecodeString(text)
	}
	return encodings
}()

var (
	fieldPrime  = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	curveD      = curveConstantD()
	groupOrderL = func() *big.Int {
		l, _ := new(big.Int).SetString(
			"7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
		return l
	}()
)

// curveConstantD returns d = -121665/121666 mod p (RFC 8032 section 5.1).
func curveConstantD() *big.Int {
	inverse := new(big.Int).ModInverse(big.NewInt(121666), fieldPrime)
	d := new(big.Int).Mul(big.NewInt(-121665), inverse)
	return d.Mod(d, fieldPrime)
}

func littleEndianInt(encoding []byte) *big.Int {
	reversed := make([]byte, len(encoding))
	for i, b := range encoding {
		reversed[len(encoding)-1-i] = b
	}
	return new(big.Int).SetBytes(reversed)
}

func hasSmallOrder(encoding []byte) bool {
	masked := bytes.Clone(encoding)
	masked[31] &= 0x7f
	for _, candidate := range smallOrderEncodings {
		if bytes.Equal(masked, candidate) {
			return true
		}
	}
	return false
}

// yIsCanonical reports whether the y coordinate of an encoded point is below p
// (RFC 8032 section 5.1.3, decoding step 1).
func yIsCanonical(encoding []byte) bool {
	masked := bytes.Clone(encoding)
	masked[31] &= 0x7f
	return littleEndianInt(masked).Cmp(fieldPrime) < 0
}

// checkEd25519PublicKey rejects a group key that is not 32 bytes, not canonical, not on the
// curve, of small order, or outside the prime-order subgroup, the same rules as libsodium's
// crypto_core_ed25519_is_valid_point. A small-order key lets a forger make one signature
// that verifies for every message. A key with a small-order component makes cofactored and
// cofactorless verifiers disagree on some signatures.
func checkEd25519PublicKey(key []byte) string {
	if len(key) != ed25519.PublicKeySize {
		return "Ed25519 key must be 32 bytes"
	}
	if !yIsCanonical(key) {
		return "Ed25519 key is not canonically encoded (y >= p)"
	}
	if hasSmallOrder(key) {
		return "Ed25519 key is a small-order point"
	}
	point, ok := decodeEdwardsPoint(key)
	if !ok {
		return "Ed25519 key is not a point on edwards25519"
	}
	if !inPrimeOrderSubgroup(point) {
		return "Ed25519 key is outside the prime-order subgroup"
	}
	return ""
}

// verifyEd25519Strict verifies an RFC 8032 signature and also rejects S >= L, a
// non-canonical R and a small-order R.
//
// Security: crypto/ed25519.Verify (Go 1.26) rejects S >= L but accepts R = identity with
// S = k*a, a signature that libsodium, and so the Python verifier, rejects. Without the R
// checks the three SDKs would disagree on which tokens are valid.
func verifyEd25519Strict(publicKey ed25519.PublicKey, message, signature []byte) bool {
	if len(signature) != ed25519.SignatureSize {
		return false
	}
	r, s := signature[:32], signature[32:]
	if littleEndianInt(s).Cmp(groupOrderL) >= 0 {
		return false
	}
	if !yIsCanonical(r) || hasSmallOrder(r) {
		return false
	}
	return ed25519.Verify(publicKey, message, signature)
}
