"""Where the coordinator's caller-authentication key lives: start_mesh and the coordinator actor.

start_mesh runs with a stand-in ``ray`` module whose actor handles call plain objects in this
process, because the unit under test is the order of the driver's steps and which folders it
opens. The real Ray path is covered by tests/integration/mesh/test_mesh_placement.py.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

import actors.caller_auth
import actors.mesh
from actors.caller_auth import load_or_create_coordinator_key, public_key_bytes
from actors.coordinator_actor import CoordinatorActor, SignersNotAttached
from actors.mesh import CoordinatorKeyMismatch, start_mesh
from actors.messages import SignerInfo
from actors.report_verification import AttestationMode, AttestationSettings

ATTESTATION_OFF = AttestationSettings(mode=AttestationMode.OFF)


class _Method:
    def __init__(self, function: Any) -> None:
        self._function = function

    def remote(self, *args: Any) -> Any:
        return self._function(*args)


class _Handle:
    """An actor handle whose ``method.remote(...)`` runs the method at once."""

    def __init__(self, target: object) -> None:
        self._target = target

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._target, name))


def _fake_ray() -> types.ModuleType:
    module = types.ModuleType("ray")

    def get(value: Any, timeout: float | None = None) -> Any:
        return value

    module.get = get  # type: ignore[attr-defined]
    return module


class _Coordinator:
    """Stands in for the coordinator actor on its own node: it owns the key in its folder."""

    def __init__(self, state_dir: str | Path, events: list[str]) -> None:
        self._key = actors.caller_auth.load_or_create_coordinator_key(state_dir)
        self._events = events
        self.attached: list[int] = []
        events.append("coordinator created")

    def caller_public_key(self) -> bytes:
        return public_key_bytes(self._key)

    def attach(self, signers: dict[int, Any]) -> None:
        self.attached = sorted(signers)
        self._events.append("attach")

    def dkg_round1(self, min_signers: int) -> str:
        return "round 1"

    def dkg_round2(self) -> str:
        return "round 2"

    def dkg_round3(self) -> str:
        return "round 3"

    def refresh(self) -> list[dict[str, object]]:
        return []


class _Signer:
    def __init__(self, identifier: int, coordinator_public_key: bytes, events: list[str]) -> None:
        self.identifier = identifier
        self.accepted_key = coordinator_public_key
        events.append(f"signer {identifier} created")

    def coordinator_public_key(self) -> bytes:
        return self.accepted_key

    def describe(self) -> SignerInfo:
        return SignerInfo(self.identifier, "epoch", None, 0)


@pytest.fixture
def fake_mesh(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace Ray and the actor factories; record the folders the key is loaded from."""
    recorded: dict[str, Any] = {
        "events": [],
        "key_folders": [],
        "signers": {},
        "coordinator": None,
        "stale_key": None,
    }

    def load_key_spy(state_dir: str | Path) -> Any:
        recorded["key_folders"].append(Path(state_dir))
        return load_or_create_coordinator_key(state_dir)

    def coordinator_factory(identifiers: Any, state_dir: str | Path, *_args: Any, **_kw: Any):
        coordinator = _Coordinator(state_dir, recorded["events"])
        recorded["coordinator"] = coordinator
        return _Handle(coordinator)

    def signer_factory(identifier: int, state_dir: str | Path, key: bytes, **_kw: Any):
        accepted = recorded["stale_key"] if identifier == 2 and recorded["stale_key"] else key
        signer = _Signer(identifier, accepted, recorded["events"])
        recorded["signers"][identifier] = signer
        return _Handle(signer)

    monkeypatch.setitem(sys.modules, "ray", _fake_ray())
    monkeypatch.setattr(actors.caller_auth, "load_or_create_coordinator_key", load_key_spy)
    monkeypatch.setattr(actors.mesh, "coordinator_actor", coordinator_factory)
    monkeypatch.setattr(actors.mesh, "signer_actor", signer_factory)
    return recorded


def test_start_mesh_leaves_driver_folder_untouched(
    tmp_path: Path, fake_mesh: dict[str, Any]
) -> None:
    driver_dir = tmp_path / "driver"
    coordinator_dir = tmp_path / "coordinator-node"

    start_mesh(driver_dir, n=3, t=2, attestation=ATTESTATION_OFF,
               coordinator_state_dir=coordinator_dir)  # fmt: skip

    assert not driver_dir.exists()
    assert fake_mesh["key_folders"] == [coordinator_dir]
    assert (coordinator_dir / "coordinator" / "caller-key.sealed.json").is_file()


def test_start_mesh_hands_coordinator_key_to_signers(
    tmp_path: Path, fake_mesh: dict[str, Any]
) -> None:
    coordinator_dir = tmp_path / "coordinator-node"

    start_mesh(tmp_path / "driver", n=3, t=2, attestation=ATTESTATION_OFF,
               coordinator_state_dir=coordinator_dir)  # fmt: skip

    expected = public_key_bytes(load_or_create_coordinator_key(coordinator_dir))
    for identifier, signer in fake_mesh["signers"].items():
        assert signer.accepted_key == expected, f"signer {identifier}"


def test_start_mesh_creates_coordinator_first_and_attaches_last(
    tmp_path: Path, fake_mesh: dict[str, Any]
) -> None:
    start_mesh(tmp_path / "driver", n=3, t=2, attestation=ATTESTATION_OFF,
               coordinator_state_dir=tmp_path / "coordinator-node")  # fmt: skip

    events = fake_mesh["events"]
    assert events[0] == "coordinator created"
    assert events.index("attach") > max(events.index(f"signer {i} created") for i in (1, 2, 3))
    assert fake_mesh["coordinator"].attached == [1, 2, 3]


def test_start_mesh_rejects_signer_with_other_coordinator_key(
    tmp_path: Path, fake_mesh: dict[str, Any]
) -> None:
    fake_mesh["stale_key"] = public_key_bytes(load_or_create_coordinator_key(tmp_path / "old"))

    with pytest.raises(CoordinatorKeyMismatch, match=r"signers \[2\] accept call tokens"):
        start_mesh(tmp_path / "driver", n=3, t=2, attestation=ATTESTATION_OFF,
                   coordinator_state_dir=tmp_path / "coordinator-node")  # fmt: skip
    assert "attach" not in fake_mesh["events"]


def test_coordinator_actor_reloads_key_after_restart(tmp_path: Path) -> None:
    first = CoordinatorActor(str(tmp_path), attestation=ATTESTATION_OFF)
    restarted = CoordinatorActor(str(tmp_path), attestation=ATTESTATION_OFF)

    assert restarted.caller_public_key() == first.caller_public_key()


def test_coordinator_actor_in_other_folder_gets_other_key(tmp_path: Path) -> None:
    first = CoordinatorActor(str(tmp_path / "node-a"), attestation=ATTESTATION_OFF)
    moved = CoordinatorActor(str(tmp_path / "node-b"), attestation=ATTESTATION_OFF)

    assert moved.caller_public_key() != first.caller_public_key()


def test_coordinator_actor_rejects_calls_before_attach(tmp_path: Path) -> None:
    coordinator = CoordinatorActor(str(tmp_path), attestation=ATTESTATION_OFF)

    with pytest.raises(SignersNotAttached, match="no signers attached"):
        coordinator.status()


def test_mesh_module_imports_no_key_loader() -> None:
    assert not hasattr(actors.mesh, "load_or_create_coordinator_key")
