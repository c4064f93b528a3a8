"""Errors raised when a Merkle proof or a checkpoint of the audit log fails verification.

Each class carries a stable ``reason`` code that ``ztmint audit verify``, dashboards and
runbooks can match on. A code may be added but never renamed or reused. Each message states
what failed and what to check next, and contains no signature or key.
"""

from __future__ import annotations


class TransparencyError(Exception):
    """Base class of every audit log verification failure.

    Attributes:
        reason: the stable code of the failure.
    """

    reason = "transparency_error"


class InvalidProof(TransparencyError):
    """An inclusion proof is malformed or does not lead to the expected root hash."""

    reason = "inclusion_proof_invalid"


class InconsistentTrees(TransparencyError):
    """A consistency proof is malformed, or the newer tree does not extend the older one."""

    reason = "trees_inconsistent"


class CheckpointMalformed(TransparencyError):
    """A checkpoint's text does not follow the checkpoint format exactly."""

    reason = "checkpoint_malformed"


class CheckpointSignatureInvalid(TransparencyError):
    """A checkpoint carries no valid signature by the expected key."""

    reason = "checkpoint_signature_invalid"


class CheckpointOriginMismatch(TransparencyError):
    """A checkpoint names another log in its origin line than the one the caller expected."""

    reason = "checkpoint_origin_mismatch"
