package ztmint

import "math/big"

// edwardsPoint is a point on edwards25519 in extended coordinates (X:Y:Z:T) with
// x = X/Z, y = Y/Z and x*y = T/Z (RFC 8032 section 5.1.4). It exists only to check that a
// group key lies in the prime-order subgroup; signatures are verified by crypto/ed25519.
type edwardsPoint struct {
	x, y, z, t *big.Int
}

// sqrtMinusOne is 2^((p-1)/4) mod p, a square root of -1 (RFC 8032 section 5.1.3).
var sqrtMinusOne = new(big.Int).Exp(big.NewInt(2),
	new(big.Int).Rsh(new(big.Int).Sub(fieldPrime, big.NewInt(1)), 2), fieldPrime)

func modP(value *big.Int) *big.Int {
	return value.Mod(value, fieldPrime)
}

func mulP(a, b *big.Int) *big.Int {
	return modP(new(big.Int).Mul(a, b))
}

// decodeEdwardsPoint decodes a 32-byte point encoding as RFC 8032 section 5.1.3 does,
// rejecting y >= p, a y with no matching x, and x = 0 with the sign bit set.
func decodeEdwardsPoint(encoding []byte) (*edwardsPoint, bool) {
	if len(encoding) != 32 || !yIsCanonical(encoding) {
		return nil, false
	}
	sign := uint(encoding[31] >> 7)
	masked := append([]byte(nil), encoding...)
	masked[31] &= 0x7f
	y := littleEndianInt(masked)

	ySquared := mulP(y, y)
	u := modP(new(big.Int).Sub(ySquared, big.NewInt(1)))
	v := modP(new(big.Int).Add(mulP(curveD, ySquared), big.NewInt(1)))
	xSquared := mulP(u, new(big.Int).ModInverse(v, fieldPrime))
	exponent := new(big.Int).Rsh(new(big.Int).Add(fieldPrime, big.NewInt(3)), 3)
	x := new(big.Int).Exp(xSquared, exponent, fieldPrime)
	if mulP(x, x).Cmp(xSquared) != 0 {
		x = mulP(x, sqrtMinusOne)
	}
	if mulP(x, x).Cmp(xSquared) != 0 {
		return nil, false
	}
	if x.Sign() == 0 && sign == 1 {
		return nil, false
	}
	if x.Bit(0) != sign {
		x = new(big.Int).Sub(fieldPrime, x)
	}
	return &edwardsPoint{x: x, y: y, z: big.NewInt(1), t: mulP(x, y)}, true
}

// add returns p + q with the complete addition formula of RFC 8032 section 5.1.4, which
// also doubles when p == q.
func (p *edwardsPoint) add(q *edwardsPoint) *edwardsPoint {
	a := mulP(new(big.Int).Sub(p.y, p.x), new(big.Int).Sub(q.y, q.x))
	b := mulP(new(big.Int).Add(p.y, p.x), new(big.Int).Add(q.y, q.x))
	c := mulP(mulP(p.t, big.NewInt(2)), mulP(curveD, q.t))
	d := mulP(mulP(p.z, big.NewInt(2)), q.z)
	e := modP(new(big.Int).Sub(b, a))
	f := modP(new(big.Int).Sub(d, c))
	g := modP(new(big.Int).Add(d, c))
	h := modP(new(big.Int).Add(b, a))
	return &edwardsPoint{x: mulP(e, f), y: mulP(g, h), z: mulP(f, g), t: mulP(e, h)}
}

func (p *edwardsPoint) isIdentity() bool {
	return p.x.Sign() == 0 && p.y.Cmp(p.z) == 0
}

// multiply returns [scalar]p by double-and-add. It is not constant time, which is fine
// because it only handles public keys.
func (p *edwardsPoint) multiply(scalar *big.Int) *edwardsPoint {
	result := &edwardsPoint{x: big.NewInt(0), y: big.NewInt(1), z: big.NewInt(1), t: big.NewInt(0)}
	for i := scalar.BitLen() - 1; i >= 0; i-- {
		result = result.add(result)
		if scalar.Bit(i) == 1 {
			result = result.add(p)
		}
	}
	return result
}

// inPrimeOrderSubgroup reports whether [L]P is the identity, as libsodium's
// crypto_core_ed25519_is_valid_point requires of a public key.
func inPrimeOrderSubgroup(point *edwardsPoint) bool {
	return point.multiply(groupOrderL).isIdentity()
}
