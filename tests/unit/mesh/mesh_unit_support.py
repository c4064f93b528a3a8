"""Helpers shared by the signer mesh unit tests: in-process signers wired to a coordinator,
WebAuthn assertions from a software P-256 key, and the development SEV-SNP chain."""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fido2 import cbor
from fido2.cose import ES256

from actors.assertion_check import AssertionEvidence, derive_challenge, request_digest
from actors.attestation.development import DevelopmentProvider
from actors.attestation.policy import development_policy
from actors.caller_auth import CallTokenIssuer, CallTokenVerifier, public_key_bytes
from actors.coordinator import CoordinatorCore, CoordinatorSettings
from actors.report_verification import DEVELOPMENT_POLICY_ID, ReportVerifier
from actors.sealing import FileSealingKeyProvider, ShareStore
from actors.signer import SignerCore, signer_actor_name
from actors.transport import LocalSignerTransport
from authz.formats import TokenClaims, token_signing_input
from authz.jose import b64url_encode
from authz.jwk import okp_ed25519_jwk, thumbprint

NOW = 1_800_000_000
_DEVELOPMENT_FOLDER: Path | None = None


class FakeClock:
    """A settable clock in seconds since the epoch."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def development_provider() -> DevelopmentProvider:
    """Return a provider over one development chain shared by the whole test process.

    Generating the chain costs two RSA key generations, so it is made once.
    """
    global _DEVELOPMENT_FOLDER
    if _DEVELOPMENT_FOLDER is None:
        folder = tempfile.mkdtemp(prefix="ztmint-dev-chain-")
        # The folder holds a development private key: remove it when the test process ends.
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _DEVELOPMENT_FOLDER = Path(folder) / "chain"
    return DevelopmentProvider(_DEVELOPMENT_FOLDER)


def report_verifier(provider: DevelopmentProvider | None = None) -> ReportVerifier:
    """Return a verifier trusting the shared development chain, checked at the real time."""
    provider = provider or development_provider()
    policy = development_policy(
        DEVELOPMENT_POLICY_ID,
        provider.ark_fingerprint,
        provider.settings.product,
        frozenset({provider.settings.measurement}),
    )
    return ReportVerifier(policy, lambda: datetime.now(UTC))


def share_store(state_dir: Path) -> ShareStore:
    """Return the development share store of ``state_dir``."""
    return ShareStore(state_dir, FileSealingKeyProvider(state_dir))


def token_claims(ttl: int = 900, iat: int = NOW, jti: str = "jti-0001") -> TokenClaims:
    """Return claims of a token request, before the coordinator completes them."""
    return TokenClaims(
        iss="https://mint.example",
        sub="alice@example.com",
        aud="billing",
        scopes=("invoices:read", "invoices:list"),
        iat=iat,
        ttl=ttl,
        jti=jti,
    )


def kid_of(group_public_key: bytes) -> str:
    """Return the RFC 7638 thumbprint of the group key."""
    return thumbprint(okp_ed25519_jwk(group_public_key))


def token_message(
    group_public_key: bytes, signers: tuple[int, ...] = (1, 2), ttl: int = 900
) -> bytes:
    """Build a token signing input naming ``signers`` with authz.formats."""
    claims = TokenClaims(**{**token_claims(ttl).__dict__, "signers": signers})
    return token_signing_input(claims, kid_of(group_public_key))


@dataclass
class SoftAuthenticator:
    """A P-256 credential that makes WebAuthn assertions, like a security key would."""

    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def cose_key(self) -> bytes:
        """Return the credential public key as CBOR COSE_Key."""
        return cbor.encode(dict(ES256.from_cryptography_key(self.private_key.public_key())))

    def assert_claims(
        self,
        claims: TokenClaims,
        salt: bytes = b"\x07" * 32,
        flags: int = 0x05,
        client_type: str = "webauthn.get",
        challenge: bytes | None = None,
    ) -> AssertionEvidence:
        """Return an assertion over the request in ``claims`` (UP and UV set by default)."""
        if challenge is None:
            digest = request_digest(claims.sub, claims.scopes, claims.aud, claims.ttl)
            challenge = derive_challenge(salt, digest)
        client_data = json.dumps(
            {
                "type": client_type,
                "challenge": b64url_encode(challenge),
                "origin": "https://mint.example",
            }
        ).encode()
        authenticator_data = hashlib.sha256(b"mint.example").digest() + bytes([flags]) + bytes(4)
        signed = authenticator_data + hashlib.sha256(client_data).digest()
        signature = self.private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return AssertionEvidence(
            credential_public_key=self.cose_key(),
            authenticator_data=authenticator_data,
            client_data_json=client_data,
            signature=signature,
            challenge_salt=salt,
        )


class SwitchableTransport(LocalSignerTransport):
    """Local transport whose signers can be replaced and whose results can be rewritten."""

    def __init__(self, signers: Mapping[int, SignerCore]) -> None:
        super().__init__(signers)
        self.signers = self._signers
        self.rewrites: dict[tuple[str, int], Any] = {}
        self.log: list[tuple[str, dict[int, tuple[Any, ...]], dict[int, object]]] = []

    def call(
        self, method: str, arguments: Mapping[int, tuple[Any, ...]], timeout: float | None
    ) -> dict[int, object]:
        results = super().call(method, arguments, timeout)
        for identifier in list(results):
            rewrite = self.rewrites.get((method, identifier))
            if rewrite is not None:
                results[identifier] = rewrite(results[identifier])
        self.log.append((method, dict(arguments), dict(results)))
        return results


@dataclass
class LocalMesh:
    """n in-process signers, their transport and a coordinator, after key generation."""

    state_dir: Path
    signers: dict[int, SignerCore]
    transport: SwitchableTransport
    coordinator: CoordinatorCore
    coordinator_key: Ed25519PrivateKey
    clock: FakeClock
    attested: bool
    authenticator: SoftAuthenticator = field(default_factory=SoftAuthenticator)

    def new_signer(self, identifier: int, max_pool_size: int = 1024) -> SignerCore:
        """Create signer ``identifier`` reading the sealed share of ``state_dir``."""
        return make_signer(
            identifier, self.state_dir, self.coordinator_key, self.clock, self.attested,
            max_pool_size,
        )  # fmt: skip

    def restart_signer(self, identifier: int) -> SignerCore:
        """Replace signer ``identifier`` with a new process reading the same sealed share."""
        restarted = self.new_signer(identifier)
        self.signers[identifier] = restarted
        self.transport.signers[identifier] = restarted
        return restarted

    def issue(self, identifier: int, method: str, *arguments: Any) -> str:
        """Return a coordinator token for one call of signer ``identifier``."""
        issuer = CallTokenIssuer(self.coordinator_key, clock=self.clock)
        return issuer.issue(signer_actor_name(identifier), method, arguments)

    def call(self, identifier: int, method: str, *arguments: Any) -> Any:
        """Call signer ``identifier`` directly with a valid coordinator token."""
        token = self.issue(identifier, method, *arguments)
        return getattr(self.signers[identifier], method)(token, *arguments)

    def sign_token(self, claims: TokenClaims | None = None) -> Any:
        """Run the coordinator's sign_token with a fresh valid assertion."""
        claims = claims or token_claims()
        kid = kid_of(self.coordinator.group_public_key())
        return self.coordinator.sign_token(claims, kid, self.authenticator.assert_claims(claims))


def make_signer(
    identifier: int,
    state_dir: Path,
    coordinator_key: Ed25519PrivateKey,
    clock: FakeClock,
    attested: bool = True,
    max_pool_size: int = 1024,
) -> SignerCore:
    """Create one in-process signer that accepts tokens of ``coordinator_key``."""
    verifier = CallTokenVerifier(
        public_key_bytes(coordinator_key), signer_actor_name(identifier), clock=clock
    )
    provider = development_provider() if attested else None
    return SignerCore(
        identifier, share_store(state_dir), verifier, provider, max_pool_size=max_pool_size
    )


def build_mesh(
    state_dir: Path, n: int = 3, t: int = 2, run_dkg: bool = True, attested: bool = True
) -> LocalMesh:
    """Create n signers in ``state_dir`` and a coordinator, and run key generation."""
    clock = FakeClock()
    coordinator_key = Ed25519PrivateKey.generate()
    signers = {
        i: make_signer(i, state_dir, coordinator_key, clock, attested) for i in range(1, n + 1)
    }
    transport = SwitchableTransport(signers)
    coordinator = CoordinatorCore(
        transport,
        list(signers),
        CallTokenIssuer(coordinator_key, clock=clock),
        CoordinatorSettings(batch_size=4, low_watermark=2),
        reports=report_verifier() if attested else None,
    )
    if run_dkg:
        coordinator.run_dkg(t)
        coordinator.refill()
    return LocalMesh(state_dir, signers, transport, coordinator, coordinator_key, clock, attested)


def coordinator_for(mesh: LocalMesh, transport: SwitchableTransport) -> CoordinatorCore:
    """Return a new coordinator with the mesh's key over ``transport``."""
    return CoordinatorCore(
        transport,
        sorted(transport.signers),
        CallTokenIssuer(mesh.coordinator_key, clock=mesh.clock),
        reports=report_verifier() if mesh.attested else None,
    )
