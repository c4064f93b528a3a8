"""Key generation relayed by the coordinator (frost-core ``keys::dkg`` part1 to part3).

``KeyGenerationRelay`` is the part of ``actors.coordinator.CoordinatorCore`` that drives the
three rounds of the dealerless key generation among all signers. It sees only public data:
round-one announcements and round-two packages encrypted from signer to signer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.errors import DkgError
from actors.frost.keys import PublicKeyPackage
from actors.messages import DkgAnnouncement, SealedRound2Package

ProgressCallback = Callable[[str], None]


@dataclass
class _DkgRun:
    """Public data of a key generation in progress."""

    min_signers: int
    announcements: dict[int, DkgAnnouncement] = field(default_factory=dict)
    relayed: dict[int, dict[int, SealedRound2Package]] = field(default_factory=dict)


class KeyGenerationRelay:
    """Key generation rounds of the coordinator; ``CoordinatorCore`` provides the attributes.

    The methods use the coordinator's signer table (``_slots``), its report verifier
    (``_reports``), its authenticated calls (``_call``, ``_attest``) and its refresh.
    """

    _slots: dict[int, Any]
    _reports: Any
    _settings: Any
    _dkg: _DkgRun | None
    _public_key_package: PublicKeyPackage | None

    def _call(
        self, method: str, arguments: Mapping[int, tuple[Any, ...]], timeout: float
    ) -> dict[int, object]:
        raise NotImplementedError

    def _attest(
        self,
        identifiers: Any,
        verifying_shares: Mapping[int, bytes],
        box_keys: Mapping[int, bytes],
    ) -> dict[int, str]:
        raise NotImplementedError

    def _adopt_public_key_package(self, packages: Mapping[int, PublicKeyPackage]) -> None:
        raise NotImplementedError

    def refresh(self) -> list[dict[str, object]]:
        """Refresh the signer table; implemented by ``CoordinatorCore``."""
        raise NotImplementedError

    def group_public_key(self) -> bytes:
        """Return the group key; implemented by ``CoordinatorCore``."""
        raise NotImplementedError

    def run_dkg(self, min_signers: int, progress: ProgressCallback | None = None) -> bytes:
        """Run all three DKG rounds among all signers and return the group key."""
        report = progress or (lambda _message: None)
        report(self.dkg_round1(min_signers))
        report(self.dkg_round2())
        report(self.dkg_round3())
        return self.group_public_key()

    def dkg_round1(self, min_signers: int) -> str:
        """Start key generation: collect every signer's round-one announcement.

        With attestation on, each signer also returns a report binding its X25519 key, and
        the coordinator verifies it before relaying the key to the others.

        Returns:
            A one-line progress message.

        Raises:
            DkgError: a group key exists already, or a signer failed (named in the error).
        """
        if self._public_key_package is not None:
            raise DkgError(
                "a group key exists already: rejecting a second key generation; remove the "
                "sealed shares first to start over"
            )
        max_signers = len(self._slots)
        if self._reports is not None:
            self.refresh()  # learn each signer's epoch, which its round-one report binds
        results = self._call_all("dkg_part1", {i: (max_signers, min_signers) for i in self._slots})
        box_keys = {i: announcement.box_public_key for i, announcement in results.items()}
        for identifier, error in sorted(self._attest(list(self._slots), {}, box_keys).items()):
            raise DkgError(
                f"signer {identifier} did not prove its X25519 key with an attestation report: "
                f"{error}; key generation aborted",
                signer=identifier,
            )
        self._dkg = _DkgRun(min_signers, announcements=results)
        return f"key generation round 1 of 3: {max_signers} signers announced commitments"

    def dkg_round2(self) -> str:
        """Hand each signer the others' announcements and collect encrypted round-two packages.

        Raises:
            DkgError: round one has not run, or a signer failed (named in the error).
        """
        run = self._require_dkg()
        arguments = {
            identifier: ({i: a for i, a in run.announcements.items() if i != identifier},)
            for identifier in self._slots
        }
        results = self._call_all("dkg_part2", arguments)
        run.relayed = {identifier: {} for identifier in self._slots}
        for sender, packages in results.items():
            for recipient, package in packages.items():
                if package.sender != sender or recipient not in run.relayed:
                    raise DkgError(
                        f"signer {sender} addressed a round-two package from {package.sender} "
                        f"to {recipient}: expected packages from itself to other signers",
                        signer=sender,
                    )
                run.relayed[recipient][sender] = package
        return f"key generation round 2 of 3: relayed {sum(map(len, results.values()))} packages"

    def dkg_round3(self) -> str:
        """Deliver the encrypted packages, collect public key packages, and check they agree.

        Raises:
            DkgError: round two has not run, or a signer failed (named in the error).
            DkgInconsistent: the signers derived different group keys.
        """
        run = self._require_dkg()
        results = self._call_all("dkg_part3", {i: (run.relayed[i],) for i in self._slots})
        self._dkg = None
        self._adopt_public_key_package(results)
        if self._reports is not None:
            # The round-one reports bind no verifying share; attest again with one.
            for identifier in self._slots:
                self._reports.forget(identifier)
        self.refresh()
        return f"key generation round 3 of 3: group key {self.group_public_key().hex()}"

    def _require_dkg(self) -> _DkgRun:
        if self._dkg is None:
            raise DkgError("key generation round called out of order: start with round 1")
        return self._dkg

    def _call_all(self, method: str, arguments: Mapping[int, tuple[Any, ...]]) -> dict[int, Any]:
        results = self._call(method, arguments, self._settings.call_timeout)
        for identifier, result in sorted(results.items()):
            if isinstance(result, BaseException):
                self._dkg = None
                raise DkgError(
                    f"signer {identifier} failed {method}: {result!r}; key generation aborted, "
                    "start again from round 1",
                    signer=identifier,
                ) from result
        return results
