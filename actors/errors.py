"""Errors of the signer mesh: sealing, signers, key generation and the coordinator.

Every error takes one message argument and keeps its other fields as attributes. Ray pickles
an exception raised in an actor and rebuilds it in the caller from ``args`` plus ``__dict__``,
so this shape survives the trip and the caller can still read ``error.signer``.
"""

from __future__ import annotations


class MeshError(Exception):
    """Base class of every error raised by the signer mesh.

    Attributes:
        signer: FROST identifier of the signer the error is about, when there is one.
    """

    def __init__(self, message: str, *, signer: int | None = None) -> None:
        super().__init__(message)
        self.signer = signer


class SealingError(MeshError):
    """A sealed signing share could not be written or read."""


class SealingKeyMissing(SealingError):
    """The sealing key of a signer that has a sealed signing share is missing."""


class SealedShareInvalid(SealingError):
    """A sealed signing share failed authentication or does not parse: it was altered."""


class SignerError(MeshError):
    """A signer rejected a request."""


class SignerNotReady(SignerError):
    """The signer has no signing share yet: run key generation or restore its sealed share."""


class StaleEpoch(SignerError):
    """A request carries commitments of an earlier run of the signer (before a restart)."""


class CommitmentMissing(SignerError):
    """The signing package has no commitment for this signer."""


class NonceUnavailable(SignerError):
    """The signer's commitment in the signing package is not in its pool.

    Either the nonce was already used (each nonce signs once), or the commitment was altered.
    """


class MessageRejected(SignerError):
    """The message to sign is not a ztmint token signing input."""


class CallerRejected(SignerError):
    """The call carries no valid coordinator token, so the signer did nothing.

    The per-call token (``actors.caller_auth``) is missing, badly signed, expired, for another
    signer, already used, or bound to other call arguments.
    """


class AssertionRejected(SignerError):
    """The WebAuthn assertion evidence does not prove a user approved the claims being signed."""


class DkgError(MeshError):
    """Distributed key generation failed or was driven out of order."""


class DkgPackageInvalid(DkgError):
    """An encrypted round-two package failed authentication or names the wrong parties."""


class DkgInconsistent(DkgError):
    """Signers finished key generation with different group keys or verifying shares."""


class CoordinatorError(MeshError):
    """The coordinator could not complete a request."""


class NotEnoughSigners(CoordinatorError):
    """Fewer than the threshold of healthy signers with commitments are available."""


class MintFailed(CoordinatorError):
    """Every signing attempt failed; ``failures`` maps each failing signer to its error text.

    Attributes:
        failures: FROST identifier of each signer that failed, mapped to what went wrong.
    """

    def __init__(self, message: str, *, failures: dict[int, str] | None = None) -> None:
        super().__init__(message)
        self.failures = dict(failures or {})


class ReportRejected(CoordinatorError):
    """A signer's attestation report failed verification or the attestation policy.

    Attributes:
        reason: the stable reason code of the ``AttestationError`` that rejected the report.
    """

    def __init__(self, message: str, *, signer: int | None = None, reason: str = "") -> None:
        super().__init__(message, signer=signer)
        self.reason = reason


class EvidenceChanged(CoordinatorError):
    """A signer's report has another measurement or policy than the one the claims name."""


class AggregateSignatureInvalid(CoordinatorError):
    """The aggregate signature does not verify under the group key although every share did."""


class LifecycleStepFailed(CoordinatorError):
    """A signer failed a step of a share refresh, repair, escrow or restore run.

    ``signer`` names the first failing signer.

    Attributes:
        failures: FROST identifier of each failing signer, mapped to what went wrong.
    """

    def __init__(
        self, message: str, *, signer: int | None = None, failures: dict[int, str] | None = None
    ) -> None:
        super().__init__(message, signer=signer)
        self.failures = dict(failures or {})


class SigningPaused(NotEnoughSigners):
    """Signing is stopped because a refresh commit reached some signers but not all.

    Old and new signing shares do not combine, so the coordinator signs again only once every
    signer has committed (``resume_refresh``).
    """
