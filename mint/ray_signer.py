"""The ``TokenSigner`` over the Ray coordinator actor.

The mint holds only the coordinator's actor handle. Each ``sign_token`` is one actor call
that reaches t signers; the coordinator itself never holds a signing share.
"""

from __future__ import annotations

import logging
from typing import Any

from actors.assertion_check import AssertionEvidence
from authz.formats import TokenClaims
from mint.signing import SignedToken, SigningError

log = logging.getLogger("ztmint.mint.signer")

SIGN_TIMEOUT_SECONDS = 10.0


class RayTokenSigner:
    """Adapt the coordinator actor handle (``actors.coordinator_actor``) to ``TokenSigner``."""

    def __init__(self, coordinator: Any, timeout: float = SIGN_TIMEOUT_SECONDS) -> None:
        self._coordinator = coordinator
        self._timeout = timeout
        self._group_public_key: bytes | None = None

    def group_public_key(self) -> bytes:
        """Return the group key, fetched once from the coordinator."""
        import ray

        if self._group_public_key is None:
            key = ray.get(self._coordinator.group_public_key.remote(), timeout=self._timeout)
            self._group_public_key = bytes(key)
        return self._group_public_key

    def sign_token(
        self, claims: TokenClaims, kid: str, assertion: AssertionEvidence
    ) -> SignedToken:
        """Ask the coordinator to complete and sign ``claims``.

        Raises:
            SigningError: the coordinator rejected the request, failed, timed out or is
                unreachable. The cause is chained and its type logged; neither the message
                nor the log contains the claims or the assertion.
        """
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        try:
            result = ray.get(
                self._coordinator.sign_token.remote(claims, kid, assertion), timeout=self._timeout
            )
        except GetTimeoutError as exc:
            log.error("signing timed out after %.1f s", self._timeout)
            raise SigningError(f"signer mesh did not respond within {self._timeout} s") from exc
        except RayError as exc:
            cause = getattr(exc, "cause", exc)
            log.error("signing failed: %s", type(cause).__name__)
            raise SigningError(f"signer mesh failed: {type(cause).__name__}: {cause}") from exc
        return SignedToken(
            signing_input=bytes(result.signing_input),
            signature=bytes(result.signature),
            signers=tuple(result.signers),
            evidence=result.evidence,
        )
