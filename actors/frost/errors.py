"""Errors of the FROST(Ed25519, SHA-512) package.

Every error raised by ``actors.frost`` is a ``FrostError``. The subclasses name the condition,
and the ones caused by a misbehaving participant carry its identifier as ``culprit`` so that the
coordinator can exclude that signer and retry.
"""

from __future__ import annotations


class FrostError(Exception):
    """Base class of every error raised by the FROST package."""


class InvalidIdentifier(FrostError):
    """An identifier is zero, not below the group order, or wrongly encoded."""


class InvalidScalar(FrostError):
    """A scalar encoding is not 32 bytes or is not canonical (its value is not below L)."""


class InvalidElement(FrostError):
    """An element encoding is not a point, is the identity, or is outside the prime-order group."""


class DuplicateParticipant(FrostError):
    """The same identifier appears twice in a participant list."""


class TooFewSigners(FrostError):
    """Fewer participants than the threshold ``min_signers`` take part."""


class InvalidParameters(FrostError):
    """Threshold parameters are out of range, for example ``min_signers`` below 2."""


class ParticipantMismatch(FrostError):
    """A set of packages or shares does not name exactly the expected participants."""


class CommitmentMismatch(FrostError):
    """A signing package lacks the signer's own commitment or carries an altered one."""


class _CulpritError(FrostError):
    """An error caused by one identified participant."""

    def __init__(self, message: str, culprit: int) -> None:
        super().__init__(message)
        self.culprit = culprit


class InvalidSignatureShare(_CulpritError):
    """A signature share fails verification against the signer's verifying share.

    Attributes:
        culprit: identifier of the signer that sent the share.
    """


class InvalidProofOfKnowledge(_CulpritError):
    """A DKG round-1 proof of knowledge of the constant coefficient does not verify.

    Attributes:
        culprit: identifier of the participant that sent the proof.
    """


class InvalidSecretShare(_CulpritError):
    """A DKG round-2 share does not match the sender's polynomial commitment.

    Attributes:
        culprit: identifier of the participant that sent the share.
    """


class InvalidSignature(FrostError):
    """A signature does not verify under the public key."""


class InvalidRepairedShare(FrostError):
    """A repaired signing share does not match the participant's published verifying share.

    Some helper sent a wrong value, and the repair protocol cannot tell which one.
    """
