"""FROST aggregation and signature share verification (RFC 9591 sections 5.3 and 5.4).

Security:
    ``aggregate`` verifies every signature share before it sums them. Skipping that check is
    dangerous: a single bad share makes the aggregate invalid without saying which signer sent
    it, so the coordinator cannot exclude the culprit and a malicious signer can deny service
    forever. Checking the final signature alone is not a substitute.
"""

from __future__ import annotations

from collections.abc import Mapping

from actors.frost.ciphersuite import (
    ZERO_SCALAR,
    base_mul,
    element_add,
    element_mul,
    scalar_add,
    scalar_mul,
    verify_signature,
)
from actors.frost.errors import (
    InvalidSignature,
    InvalidSignatureShare,
    ParticipantMismatch,
)
from actors.frost.keys import (
    PublicKeyPackage,
    check_enough_signers,
    derive_interpolating_value,
)
from actors.frost.round2 import (
    SignatureShare,
    SigningPackage,
    compute_binding_factors,
    compute_challenge,
    compute_group_commitment,
)


def _verify_share(
    share: SignatureShare,
    verifying_share: bytes,
    signing_package: SigningPackage,
    binding_factors: Mapping[int, bytes],
    challenge: bytes,
) -> None:
    identifier = share.identifier
    commitments = signing_package.commitment_for(identifier)
    if commitments is None:
        raise InvalidSignatureShare(
            f"signature share from signer {identifier} has no commitment in the signing "
            "package, expected shares only from the package's signers",
            culprit=identifier,
        )
    # [z_i]B must equal D_i + [rho_i]E_i + [c * lambda_i]Y_i.
    commitment_share = element_add(
        commitments.hiding, element_mul(commitments.binding, binding_factors[identifier])
    )
    lambda_i = derive_interpolating_value(signing_package.participants, identifier)
    expected = element_add(
        commitment_share, element_mul(verifying_share, scalar_mul(challenge, lambda_i))
    )
    if base_mul(share.value) != expected:
        raise InvalidSignatureShare(
            f"signature share from signer {identifier} does not verify against its verifying "
            "share. Exclude this signer and retry with fresh commitments",
            culprit=identifier,
        )


def verify_signature_share(
    share: SignatureShare,
    verifying_share: bytes,
    signing_package: SigningPackage,
    group_public_key: bytes,
) -> None:
    """Verify one signature share (``verify_signature_share``, RFC 9591 section 5.4).

    Raises:
        InvalidSignatureShare: when the share does not verify, and ``culprit`` names its signer.
    """
    binding_factors = compute_binding_factors(group_public_key, signing_package)
    group_commitment = compute_group_commitment(signing_package, binding_factors)
    challenge = compute_challenge(group_commitment, group_public_key, signing_package.message)
    _verify_share(share, verifying_share, signing_package, binding_factors, challenge)


def aggregate(
    signing_package: SigningPackage,
    signature_shares: Mapping[int, SignatureShare],
    public_key_package: PublicKeyPackage,
) -> bytes:
    """Verify every share, sum them and verify the result (``aggregate``, section 5.3).

    Returns:
        The 64-byte Ed25519 signature R || z, which any RFC 8032 verifier accepts under the
        group public key.

    Raises:
        TooFewSigners: when the package has fewer than ``min_signers`` commitments.
        ParticipantMismatch: when the shares are not exactly one per signer of the package.
        InvalidIdentifier: when a signer is missing from the public key package.
        InvalidSignatureShare: when a share does not verify, and ``culprit`` names its signer.
        InvalidSignature: when the aggregate signature does not verify.
    """
    check_enough_signers(len(signing_package.commitments), public_key_package.min_signers)
    participants = signing_package.participants
    if sorted(signature_shares) != list(participants):
        raise ParticipantMismatch(
            f"signature shares are from signers {sorted(signature_shares)}, but the signing "
            f"package names signers {list(participants)}, expected one share per signer"
        )
    for identifier, share in signature_shares.items():
        if share.identifier != identifier:
            raise ParticipantMismatch(
                f"signature share filed under signer {identifier} names signer "
                f"{share.identifier}, expected the mapping key to be the share's signer"
            )

    group_public_key = public_key_package.group_public_key
    binding_factors = compute_binding_factors(group_public_key, signing_package)
    group_commitment = compute_group_commitment(signing_package, binding_factors)
    challenge = compute_challenge(group_commitment, group_public_key, signing_package.message)

    # Check each share first, so that a bad one names its signer (RFC 9591 section 5.4).
    for identifier in participants:
        _verify_share(
            signature_shares[identifier],
            public_key_package.verifying_share(identifier),
            signing_package,
            binding_factors,
            challenge,
        )

    z = ZERO_SCALAR
    for identifier in participants:
        z = scalar_add(z, signature_shares[identifier].value)
    signature = group_commitment + z

    try:
        verify_signature(signing_package.message, signature, group_public_key)
    except InvalidSignature as exc:
        raise InvalidSignature(
            f"aggregate signature does not verify under the group public key although every "
            f"share verified. Check that the public key package is consistent: {exc}"
        ) from exc
    return signature
