"""A software WebAuthn authenticator for development, backed by one key file.

It behaves like a roaming authenticator without user verification: it creates one P-256
credential with packed self-attestation (WebAuthn Level 3 section 8.2), and makes
assertions with the UP flag set and a signature counter that grows by one per assertion.
Its output is the WebAuthn JSON that python-fido2 2.x parses with
``RegistrationResponse.from_dict`` and ``AuthenticationResponse.from_dict``.

The key file is JSON, created with mode 0600, holding the PKCS#8 private key, the credential
id, the RP ID and the counter. The counter is written to disk (atomically, with fsync) before
each signature, so a crash can skip a value but never repeat one.

Security:
    The private key is a plain file: anyone who can read it can mint tokens as its owner
    until the credential is revoked. The mint accepts self-attestation only when
    ``ZTMINT_ALLOW_SELF_ATTESTATION`` is true, which is meant for development only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    Aaguid,
    AttestationObject,
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorAssertionResponse,
    AuthenticatorAttestationResponse,
    AuthenticatorData,
    CollectedClientData,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions,
    RegistrationResponse,
)

KEY_FILE_VERSION = 1
CREDENTIAL_ID_SIZE = 32
# All-zero AAGUID: this authenticator claims no model (WebAuthn Level 3 section 6.5.1).
SOFTWARE_AAGUID = Aaguid(bytes(16))


class SoftKeyError(Exception):
    """The software authenticator cannot perform the requested operation."""


@dataclass(frozen=True)
class _KeyFile:
    rp_id: str
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    sign_count: int

    def __repr__(self) -> str:
        return f"_KeyFile(rp_id={self.rp_id!r}, sign_count={self.sign_count}, <redacted>)"


class SoftwareAuthenticator:
    """A file-backed P-256 authenticator producing WebAuthn JSON.

    Args:
        key_file: path of the key file; created by ``register``.
        origin: the origin written into ``clientDataJSON``.
        random_bytes: source of the credential id; ``os.urandom`` by default.
        user_verified: set the UV flag in assertions, as a WebAuthn virtual authenticator
            with ``isUserVerified`` does, although no user is verified. It lets development
            guardians approve break-glass requests, which require UV.
    """

    def __init__(
        self,
        key_file: Path,
        origin: str,
        random_bytes: Callable[[int], bytes] = os.urandom,
        user_verified: bool = False,
    ) -> None:
        self._key_file = key_file
        self._origin = origin
        self._random_bytes = random_bytes
        self._user_verified = user_verified

    def __repr__(self) -> str:
        return f"SoftwareAuthenticator(key_file={str(self._key_file)!r})"

    def register(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Create a credential for ``PublicKeyCredentialCreationOptions`` JSON.

        Returns:
            ``RegistrationResponseJSON`` with a packed self-attestation.

        Raises:
            SoftKeyError: when the key file exists already or ES256 is not offered.
        """
        creation = PublicKeyCredentialCreationOptions.from_dict(options)
        if not any(param.alg == ES256.ALGORITHM for param in creation.pub_key_cred_params):
            raise SoftKeyError("the relying party does not offer ES256 (-7); cannot register")
        rp_id = creation.rp.id
        if rp_id is None:
            raise SoftKeyError("creation options carry no rp.id; cannot register")

        private_key = ec.generate_private_key(ec.SECP256R1())
        credential_id = self._random_bytes(CREDENTIAL_ID_SIZE)
        self._create_key_file(_KeyFile(rp_id, credential_id, private_key, 0))

        client_data = CollectedClientData.create(
            type=CollectedClientData.TYPE.CREATE, challenge=creation.challenge, origin=self._origin
        )
        cose_key = ES256.from_cryptography_key(private_key.public_key())
        auth_data = AuthenticatorData.create(
            _rp_id_hash(rp_id),
            AuthenticatorData.FLAG.UP | AuthenticatorData.FLAG.AT,
            0,
            AttestedCredentialData.create(SOFTWARE_AAGUID, credential_id, cose_key),
        )
        # Packed self-attestation: the credential key signs authData || clientDataHash.
        signature = private_key.sign(auth_data + client_data.hash, ec.ECDSA(hashes.SHA256()))
        attestation = AttestationObject.create(
            "packed", auth_data, {"alg": ES256.ALGORITHM, "sig": signature}
        )
        response = RegistrationResponse(
            raw_id=credential_id,
            response=AuthenticatorAttestationResponse(
                client_data=client_data, attestation_object=attestation
            ),
        )
        return json.loads(json.dumps(dict(response)))

    def authenticate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Make an assertion for ``PublicKeyCredentialRequestOptions`` JSON.

        Returns:
            ``AuthenticationResponseJSON``.

        Raises:
            SoftKeyError: when the key file is missing or invalid, the RP ID differs from
                the one registered, or the credential is not in ``allowCredentials``.
        """
        request = PublicKeyCredentialRequestOptions.from_dict(options)
        key = self._load_key_file()
        if request.rp_id is not None and request.rp_id != key.rp_id:
            raise SoftKeyError(
                f"request is for RP ID {request.rp_id!r} but the key is for {key.rp_id!r}"
            )
        allowed = [descriptor.id for descriptor in request.allow_credentials or []]
        if allowed and key.credential_id not in allowed:
            raise SoftKeyError(
                "the relying party does not list this key's credential; enroll it first"
            )

        sign_count = key.sign_count + 1
        self._write_key_file(_KeyFile(key.rp_id, key.credential_id, key.private_key, sign_count))

        client_data = CollectedClientData.create(
            type=CollectedClientData.TYPE.GET, challenge=request.challenge, origin=self._origin
        )
        flags = AuthenticatorData.FLAG.UP
        if self._user_verified:
            flags |= AuthenticatorData.FLAG.UV
        auth_data = AuthenticatorData.create(_rp_id_hash(key.rp_id), flags, sign_count)
        signature = key.private_key.sign(auth_data + client_data.hash, ec.ECDSA(hashes.SHA256()))
        response = AuthenticationResponse(
            raw_id=key.credential_id,
            response=AuthenticatorAssertionResponse(
                client_data=client_data, authenticator_data=auth_data, signature=signature
            ),
        )
        return json.loads(json.dumps(dict(response)))

    def _create_key_file(self, key: _KeyFile) -> None:
        self._key_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise SoftKeyError(
                f"key file {self._key_file} exists; pass another --key-file or delete it"
            ) from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(_serialise(key))
            handle.flush()
            os.fsync(handle.fileno())

    def _write_key_file(self, key: _KeyFile) -> None:
        temporary = self._key_file.with_name(self._key_file.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(_serialise(key))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._key_file)

    def _load_key_file(self) -> _KeyFile:
        try:
            data = json.loads(self._key_file.read_bytes())
        except FileNotFoundError:
            raise SoftKeyError(
                f"key file {self._key_file} not found; run `ztmint enroll` first"
            ) from None
        except ValueError as exc:
            raise SoftKeyError(f"key file {self._key_file} is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != KEY_FILE_VERSION:
            raise SoftKeyError(
                f"key file {self._key_file} has an unknown layout; expected version "
                f"{KEY_FILE_VERSION}"
            )
        private_key = serialization.load_der_private_key(
            websafe_decode(data["private_key_pkcs8"]), password=None
        )
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise SoftKeyError(f"key file {self._key_file} does not contain a P-256 key")
        return _KeyFile(
            rp_id=data["rp_id"],
            credential_id=websafe_decode(data["credential_id"]),
            private_key=private_key,
            sign_count=int(data["sign_count"]),
        )


def _serialise(key: _KeyFile) -> bytes:
    pkcs8 = key.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    document = {
        "version": KEY_FILE_VERSION,
        "rp_id": key.rp_id,
        "credential_id": websafe_encode(key.credential_id),
        "private_key_pkcs8": websafe_encode(pkcs8),
        "sign_count": key.sign_count,
    }
    return json.dumps(document, indent=2).encode("utf-8") + b"\n"


def _rp_id_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode("utf-8")).digest()
