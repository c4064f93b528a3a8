"""The ``TokenSigner`` over the Ray coordinator actor.

The mint holds only the coordinator's actor handle. Each ``sign`` is one actor call that
reaches t signers; the coordinator itself never holds a signing share.
"""

from __future__ import annotations

import logging
from typing import Any

from mint.signing import SigningError, SignResult

log = logging.getLogger("ztmint.mint.signer")

SIGN_TIMEOUT_SECONDS = 10.0


class RayTokenSigner:
    """Adapt the coordinator actor handle (``actors.coordinator``) to ``TokenSigner``."""

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

    def sign(self, message: bytes) -> SignResult:
        """Ask the coordinator for an aggregate signature over ``message``.

        Raises:
            SigningError: the coordinator failed, timed out or is unreachable. The cause is
                chained and logged; the message never contains the signing input.
        """
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        try:
            result = ray.get(self._coordinator.sign.remote(message), timeout=self._timeout)
        except GetTimeoutError as exc:
            log.error("signing timed out after %.1f s", self._timeout)
            raise SigningError(f"signer mesh did not answer within {self._timeout} s") from exc
        except RayError as exc:
            log.error("signing failed: %s", type(exc).__name__)
            raise SigningError(f"signer mesh failed: {type(exc).__name__}") from exc
        return SignResult(signature=bytes(result.signature), signers=tuple(result.signers))
