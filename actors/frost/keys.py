"""Identifiers, key packages and Shamir polynomial helpers of FROST (RFC 9591).

A participant keeps a ``KeyPackage``: its signing share (secret), its verifying share and the
group public key. Everyone has the ``PublicKeyPackage``: every verifying share and the group
public key. Polynomials are lists of scalars with the constant coefficient first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from actors.frost.ciphersuite import (
    GROUP_ORDER,
    IDENTITY_ELEMENT,
    ONE_SCALAR,
    ZERO_SCALAR,
    base_mul,
    decode_element,
    decode_scalar,
    element_add,
    element_mul,
    scalar_add,
    scalar_from_int,
    scalar_invert,
    scalar_mul,
    scalar_sub,
)
from actors.frost.errors import (
    DuplicateParticipant,
    InvalidElement,
    InvalidIdentifier,
    InvalidParameters,
    InvalidScalar,
    TooFewSigners,
)

Identifier = int
"""A participant identifier: an integer i with 1 <= i < L, serialized as the scalar i."""

MIN_THRESHOLD = 2
"""Smallest ``min_signers`` accepted, because a threshold of one would let any signer sign alone."""


def check_identifier(identifier: int) -> int:
    """Check that an identifier is an integer in [1, L).

    Raises:
        InvalidIdentifier: when it is not.
    """
    if isinstance(identifier, bool) or not isinstance(identifier, int):
        raise InvalidIdentifier(
            f"identifier {identifier!r} is not an integer, expected an integer in [1, L)"
        )
    if not 0 < identifier < GROUP_ORDER:
        raise InvalidIdentifier(
            f"identifier {identifier} is out of range, expected an integer in [1, L). "
            "Zero is never a valid identifier because f(0) is the group secret"
        )
    return identifier


def encode_identifier(identifier: int) -> bytes:
    """Serialize an identifier as a 32-byte little-endian scalar (SerializeScalar).

    Raises:
        InvalidIdentifier: when the identifier is not in [1, L).
    """
    return scalar_from_int(check_identifier(identifier))


def decode_identifier(data: bytes) -> int:
    """Parse a 32-byte little-endian identifier encoding.

    Raises:
        InvalidIdentifier: when the encoding is not 32 bytes, not canonical, or zero.
    """
    try:
        decode_scalar(data)
    except InvalidScalar as exc:
        raise InvalidIdentifier(f"identifier encoding is invalid: {exc}") from exc
    return check_identifier(int.from_bytes(data, "little"))


def check_participants(identifiers: Iterable[int]) -> tuple[int, ...]:
    """Check a list of identifiers and return it sorted.

    Raises:
        InvalidIdentifier: when an identifier is out of range.
        DuplicateParticipant: when an identifier appears twice.
    """
    checked = [check_identifier(i) for i in identifiers]
    seen: set[int] = set()
    for identifier in checked:
        if identifier in seen:
            raise DuplicateParticipant(
                f"participant {identifier} appears more than once, expected distinct identifiers"
            )
        seen.add(identifier)
    return tuple(sorted(checked))


def check_threshold(min_signers: int, max_signers: int | None = None) -> None:
    """Check threshold parameters as frost-core does: 2 <= min_signers <= max_signers.

    Raises:
        InvalidParameters: when they are out of range.
    """
    if min_signers < MIN_THRESHOLD:
        raise InvalidParameters(f"min_signers is {min_signers}, expected at least {MIN_THRESHOLD}")
    if max_signers is not None and max_signers < min_signers:
        raise InvalidParameters(
            f"max_signers is {max_signers}, below min_signers {min_signers}, "
            "expected max_signers >= min_signers"
        )


def derive_interpolating_value(participants: Sequence[int], identifier: int, at: int = 0) -> bytes:
    """Compute the Lagrange coefficient of ``identifier`` over ``participants`` at ``at``.

    With ``at = 0`` this is ``derive_interpolating_value`` of RFC 9591 section 4.2:
    the product of x_j / (x_j - x_i) over the other participants. Share repair evaluates at
    the identifier of the participant being repaired instead.

    Raises:
        InvalidIdentifier: when ``identifier`` is not among ``participants``.
        DuplicateParticipant: when ``participants`` repeats an identifier.
    """
    check_participants(participants)
    if identifier not in participants:
        raise InvalidIdentifier(
            f"identifier {identifier} is not in the participant list {sorted(participants)}"
        )
    x_i = scalar_from_int(identifier)
    x = scalar_from_int(at)
    numerator = ONE_SCALAR
    denominator = ONE_SCALAR
    for other in participants:
        if other == identifier:
            continue
        x_j = scalar_from_int(other)
        numerator = scalar_mul(numerator, scalar_sub(x_j, x))
        denominator = scalar_mul(denominator, scalar_sub(x_j, x_i))
    return scalar_mul(numerator, scalar_invert(denominator))


def evaluate_polynomial(coefficients: Sequence[bytes], identifier: int) -> bytes:
    """Evaluate f(identifier) for a polynomial given constant coefficient first (Horner).

    Security:
        Applied to a secret polynomial the result is a secret share, which must reach only the
        participant it belongs to.
    """
    if not coefficients:
        raise InvalidParameters("polynomial has no coefficients, expected at least one")
    x = encode_identifier(identifier)
    value = ZERO_SCALAR
    for coefficient in reversed(coefficients):
        value = scalar_add(scalar_mul(value, x), decode_scalar(coefficient))
    return value


def shares_from_polynomial(
    coefficients: Sequence[bytes], identifiers: Sequence[int]
) -> dict[int, bytes]:
    """Compute the Shamir shares f(i) of a polynomial for each identifier.

    This is the share step of RFC 9591 Appendix C.1 (``secret_share_shard``) with the
    coefficients given, constant first, instead of drawn at random.

    Returns:
        A mapping from identifier to the 32-byte signing share f(identifier).

    Raises:
        InvalidScalar: when a coefficient encoding is not canonical.
        InvalidIdentifier, DuplicateParticipant: when the identifiers are invalid.
    """
    return {i: evaluate_polynomial(coefficients, i) for i in check_participants(identifiers)}


def commit_polynomial(coefficients: Sequence[bytes]) -> tuple[bytes, ...]:
    """Return the Feldman commitment [a_k]B of every coefficient a_k (RFC 9591 Appendix C.2)."""
    return tuple(base_mul(decode_scalar(coefficient)) for coefficient in coefficients)


def evaluate_commitment(commitment: Sequence[bytes], identifier: int) -> bytes:
    """Compute sum over k of i^k * C_k, which equals [f(i)]B when C commits to f.

    This is the right-hand side of ``vss_verify`` in RFC 9591 Appendix C.2.
    """
    x = encode_identifier(identifier)
    power = ONE_SCALAR
    result = IDENTITY_ELEMENT
    for element in commitment:
        result = element_add(result, element_mul(element, power))
        power = scalar_mul(power, x)
    return result


@dataclass(frozen=True, repr=False)
class KeyPackage:
    """Key material of one signer after key generation (frost-core ``KeyPackage``).

    Attributes:
        identifier: the signer's identifier.
        signing_share: the signer's secret share s_i, a 32-byte scalar.
        verifying_share: [s_i]B, published so that others can check this signer's shares.
        group_public_key: the group key that every aggregate signature verifies under.
        min_signers: the threshold t.

    Security:
        ``signing_share`` is secret. ``repr`` redacts it. Store it encrypted at rest.
    """

    identifier: int
    signing_share: bytes = field(repr=False)
    verifying_share: bytes
    group_public_key: bytes
    min_signers: int

    def __post_init__(self) -> None:
        check_identifier(self.identifier)
        decode_scalar(self.signing_share)
        decode_element(self.verifying_share)
        decode_element(self.group_public_key)
        check_threshold(self.min_signers)
        if base_mul(self.signing_share) != self.verifying_share:
            raise InvalidElement(
                f"verifying share of participant {self.identifier} is not [signing_share]B, so "
                "the key package is corrupted or mixes two participants"
            )

    def __repr__(self) -> str:
        return (
            f"KeyPackage(identifier={self.identifier}, signing_share=<redacted>, "
            f"verifying_share={self.verifying_share.hex()}, "
            f"group_public_key={self.group_public_key.hex()}, min_signers={self.min_signers})"
        )


@dataclass(frozen=True)
class PublicKeyPackage:
    """The public outcome of key generation (frost-core ``PublicKeyPackage``).

    Attributes:
        verifying_shares: each participant's verifying share, by identifier.
        group_public_key: the group key.
        min_signers: the threshold t.
    """

    verifying_shares: Mapping[int, bytes]
    group_public_key: bytes
    min_signers: int

    def __post_init__(self) -> None:
        check_participants(self.verifying_shares)
        for share in self.verifying_shares.values():
            decode_element(share)
        decode_element(self.group_public_key)
        check_threshold(self.min_signers, len(self.verifying_shares))
        # A sorted private copy, so later changes to the caller's mapping cannot alter it. A
        # plain dict (not a MappingProxyType) keeps the package picklable for Ray and storage.
        copied = dict(sorted(self.verifying_shares.items()))
        object.__setattr__(self, "verifying_shares", copied)

    def verifying_share(self, identifier: int) -> bytes:
        """Return the verifying share of ``identifier``.

        Raises:
            InvalidIdentifier: when the package has no share for that identifier.
        """
        try:
            return self.verifying_shares[identifier]
        except KeyError:
            raise InvalidIdentifier(
                f"participant {identifier} is not in the public key package. Known "
                f"participants are {list(self.verifying_shares)}"
            ) from None


def check_enough_signers(count: int, min_signers: int) -> None:
    """Raise TooFewSigners when fewer than ``min_signers`` participants take part."""
    if count < min_signers:
        raise TooFewSigners(
            f"{count} signers take part, expected at least min_signers = {min_signers}"
        )
