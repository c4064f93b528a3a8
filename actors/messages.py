"""Messages between the coordinator and the signers, all public data.

Nothing here carries a secret: round-two key generation packages travel only as ciphertext
(``SealedRound2Package``), and commitments are the public halves of nonces.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.assertion_check import AssertionEvidence
from actors.attestation.evidence import Evidence
from actors.frost import dkg
from actors.frost.keys import PublicKeyPackage
from actors.frost.round1 import SigningCommitments
from actors.frost.round2 import SignatureShare, SigningPackage


@dataclass(frozen=True)
class DkgAnnouncement:
    """Round-one broadcast of one signer in key generation.

    Attributes:
        package: the FROST round-one package (commitment and proof of knowledge).
        box_public_key: the signer's X25519 public key for this key generation, to which the
            others encrypt their round-two packages.
    """

    package: dkg.Round1Package
    box_public_key: bytes


@dataclass(frozen=True)
class SealedRound2Package:
    """A DKG round-two package encrypted from ``sender`` to ``recipient``.

    Attributes:
        sender: FROST identifier of the signer that made the package.
        recipient: FROST identifier of the only signer that can decrypt it.
        ciphertext: ``nacl.public.Box`` output (24-byte nonce, then ciphertext and tag).
    """

    sender: int
    recipient: int
    ciphertext: bytes


@dataclass(frozen=True)
class CommitmentBatch:
    """Fresh round-one commitments published by one signer.

    Attributes:
        identifier: FROST identifier of the signer.
        epoch: the signer's run id; commitments of another epoch are worthless.
        commitments: the public halves of nonces now in the signer's pool.
    """

    identifier: int
    epoch: str
    commitments: tuple[SigningCommitments, ...]


@dataclass(frozen=True)
class SignRequest:
    """One call asking a signer for a signature share.

    Attributes:
        epoch: the signer epoch the coordinator took the signer's commitment from.
        signing_package: the message and the commitments of every chosen signer.
        assertion: the WebAuthn assertion that approved the token request.
    """

    epoch: str
    signing_package: SigningPackage
    assertion: AssertionEvidence


@dataclass(frozen=True)
class SignatureReply:
    """A signer's reply to a ``SignRequest``.

    Attributes:
        share: the signature share (RFC 9591 section 5.2).
        evidence: an SEV-SNP report whose REPORT_DATA binds this share to this signing input,
            or None when attestation is off.
    """

    share: SignatureShare
    evidence: Evidence | None


@dataclass(frozen=True)
class SignerInfo:
    """Public state of a signer.

    Attributes:
        identifier: FROST identifier.
        epoch: random id of this run of the signer, new after every restart.
        public_key_package: the group key and verifying shares, or None before key generation.
        pool_depth: number of unused nonces in the pool.
        node_id: Ray node the signer runs on, when it runs in Ray.
        fault_domain: value of the node's fault domain label, when it runs in Ray.
    """

    identifier: int
    epoch: str
    public_key_package: PublicKeyPackage | None
    pool_depth: int
    node_id: str | None = None
    fault_domain: str | None = None
