"""Guardian key pairs on P-256 that compute ECDH for escrow, in software or in a YubiKey.

Limitations:
    ``PivGuardianKey`` needs the ``yubikey-manager`` package (``yubikit``), which is not
    installed in this project, and a YubiKey. Its tests use a stand-in for the PIV session.
"""

from __future__ import annotations

from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from authz.jwk import ec_p256_jwk, thumbprint

_P256_COORDINATE_SIZE = 32


class GuardianKey(Protocol):
    """A guardian's P-256 key pair that can run ECDH without exporting the private key."""

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """Return the guardian's P-256 public key."""
        ...

    def ecdh(self, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        """Return the ECDH shared secret (the x-coordinate, 32 bytes) with ``peer_public_key``."""
        ...


class SoftwareGuardianKey:
    """A guardian key held in memory by ``cryptography``, for development and tests.

    Args:
        private_key: a P-256 private key.
    """

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError(f"guardian key is on {private_key.curve.name}, expected P-256")
        self._private_key = private_key

    @classmethod
    def generate(cls) -> SoftwareGuardianKey:
        """Generate a new P-256 guardian key."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def __repr__(self) -> str:
        key_id = guardian_key_id(self.public_key())
        return f"SoftwareGuardianKey(key_id={key_id}, private_key=<redacted>)"

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """Return the guardian's P-256 public key."""
        return self._private_key.public_key()

    def ecdh(self, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        """Return the ECDH shared secret with ``peer_public_key`` (SEC 1 section 3.3.1)."""
        return self._private_key.exchange(ec.ECDH(), peer_public_key)


class PivGuardianKey:
    """A guardian key in a YubiKey PIV slot; the YubiKey computes the ECDH.

    Args:
        session: an open ``yubikit.piv.PivSession`` whose PIN is already verified.
        slot: the ``yubikit.piv.SLOT`` holding a P-256 key (KEY_MANAGEMENT, 9D, is usual).
        public_key: the slot's public key, read from its certificate or metadata.

    Limitations:
        Not tested here: it needs ``yubikey-manager`` and a YubiKey. It only forwards to
        ``PivSession.calculate_secret(slot, peer_public_key)`` of yubikey-manager 5.
    """

    def __init__(self, session: Any, slot: Any, public_key: ec.EllipticCurvePublicKey) -> None:
        self._session = session
        self._slot = slot
        self._public_key = public_key

    def __repr__(self) -> str:
        return f"PivGuardianKey(slot={self._slot!r}, key_id={guardian_key_id(self._public_key)})"

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """Return the slot's P-256 public key."""
        return self._public_key

    def ecdh(self, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        """Ask the YubiKey for the ECDH shared secret with ``peer_public_key``."""
        return bytes(self._session.calculate_secret(self._slot, peer_public_key))


def guardian_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Return the RFC 7638 thumbprint of a guardian's P-256 public key."""
    numbers = public_key.public_numbers()
    x = numbers.x.to_bytes(_P256_COORDINATE_SIZE, "big")
    y = numbers.y.to_bytes(_P256_COORDINATE_SIZE, "big")
    return thumbprint(ec_p256_jwk(x, y))
