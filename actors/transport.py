"""Transports that carry the coordinator's calls to its signers, in-process or as Ray actors.

A transport sends one method call to several signers at once and returns, for each signer,
either the result or the exception it raised. Returning errors as values lets the coordinator
tell apart a signer that failed, one that timed out, and one that sent a bad share, and go on
with the others.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from actors.signer import NAMESPACE, SignerCore, signer_actor_name


class SignerTransport(Protocol):
    """Calls one method of several signers and collects their results."""

    def call(
        self, method: str, arguments: Mapping[int, tuple[Any, ...]], timeout: float | None
    ) -> dict[int, object]:
        """Call ``method`` on every signer in ``arguments`` with its positional arguments.

        Args:
            method: name of a ``SignerCore`` method.
            arguments: positional arguments of the call, by signer identifier.
            timeout: seconds to wait for all results, or None to wait without limit.

        Returns:
            By signer identifier: the result, or the exception the call raised; a call that
            did not finish within ``timeout`` maps to a ``TimeoutError``.
        """
        ...


class LocalSignerTransport:
    """Calls ``SignerCore`` objects in this process, one after the other.

    Each signer runs one call at a time, as a Ray actor without concurrency does, so several
    threads may share the transport.

    Limitations:
        Calls run sequentially and ``timeout`` is ignored, because a local call cannot be
        abandoned half-way. Use it for tests and single-process tools.
    """

    def __init__(self, signers: Mapping[int, SignerCore]) -> None:
        self._signers = dict(signers)
        self._signer_locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _signer_lock(self, identifier: int) -> threading.Lock:
        with self._locks_guard:
            return self._signer_locks.setdefault(identifier, threading.Lock())

    def call(
        self, method: str, arguments: Mapping[int, tuple[Any, ...]], timeout: float | None
    ) -> dict[int, object]:
        """Call ``method`` on each signer in turn; see ``SignerTransport.call``."""
        results: dict[int, object] = {}
        for identifier, args in arguments.items():
            signer = self._signers.get(identifier)
            if signer is None:
                results[identifier] = LookupError(
                    f"signer {identifier} not found in this transport"
                )
                continue
            try:
                with self._signer_lock(identifier):
                    results[identifier] = getattr(signer, method)(*args)
            except Exception as exc:  # noqa: BLE001 -- returned to the caller as a value
                results[identifier] = exc
        return results


class RaySignerTransport:
    """Calls the signer actors ``ztmint-signer-<id>`` in namespace ``ztmint`` in parallel.

    Handles passed in are kept, which also keeps non-detached signer actors alive: Ray
    destroys such an actor once no handle to it is left, even when it has a name. Other
    signers are looked up by name on first use. Ray keeps a handle valid across a restart of its
    actor (the integration tests restart a signer and keep signing through the same handle).
    """

    def __init__(self, handles: Mapping[int, Any] | None = None, namespace: str = NAMESPACE):
        self._namespace = namespace
        self._handles: dict[int, Any] = dict(handles or {})

    def _handle(self, identifier: int) -> Any:
        import ray

        handle = self._handles.get(identifier)
        if handle is None:
            handle = ray.get_actor(signer_actor_name(identifier), namespace=self._namespace)
            self._handles[identifier] = handle
        return handle

    def call(
        self, method: str, arguments: Mapping[int, tuple[Any, ...]], timeout: float | None
    ) -> dict[int, object]:
        """Send every call at once and wait up to ``timeout``; see ``SignerTransport.call``."""
        import ray

        results: dict[int, object] = {}
        pending: dict[int, Any] = {}
        for identifier, args in arguments.items():
            try:
                pending[identifier] = getattr(self._handle(identifier), method).remote(*args)
            except Exception as exc:  # noqa: BLE001 -- e.g. ValueError: actor name not found
                results[identifier] = exc
        if not pending:
            return results

        ready, _ = ray.wait(list(pending.values()), num_returns=len(pending), timeout=timeout)
        finished = set(ready)
        for identifier, reference in pending.items():
            if reference not in finished:
                results[identifier] = TimeoutError(
                    f"signer {identifier}: {method} timed out after {timeout} s"
                )
                continue
            try:
                results[identifier] = ray.get(reference)
            except Exception as exc:  # noqa: BLE001 -- RayActorError or the signer's own error
                results[identifier] = exc
        return results
