"""The ``SoftwareAuthenticator`` interface over CTAP2, for a YubiKey plugged in over USB.

python-fido2's ``Fido2Client`` talks CTAP2 (or CTAP1 for older keys) to the first
``CtapHidDevice`` found, and returns the same WebAuthn JSON as the software authenticator.

Limitations:
    Not exercised by the test suite, because no authenticator is attached to the test
    machines. It uses the first FIDO HID device found, cannot collect a PIN (user
    verification fails when the relying party requires it and the key has a PIN), and
    prompts on stderr for a touch.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.hid import CtapHidDevice


class YubiKeyError(Exception):
    """No usable FIDO authenticator is attached."""


class _TouchPrompt(UserInteraction):
    def prompt_up(self) -> None:
        print("Touch your security key now.", file=sys.stderr)


class YubiKeyAuthenticator:
    """A CTAP2 authenticator on USB HID, driven by python-fido2's ``Fido2Client``.

    Args:
        origin: the origin written into ``clientDataJSON``; it must match the mint's origin.
    """

    def __init__(self, origin: str) -> None:
        self._origin = origin

    def _client(self) -> Fido2Client:
        device = next(CtapHidDevice.list_devices(), None)
        if device is None:
            raise YubiKeyError("no FIDO security key found on USB; plug one in and retry")
        return Fido2Client(
            device, DefaultClientDataCollector(self._origin), user_interaction=_TouchPrompt()
        )

    def register(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Create a credential for ``PublicKeyCredentialCreationOptions`` JSON."""
        response = self._client().make_credential(options)  # type: ignore[arg-type]
        return dict(response)

    def authenticate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Make an assertion for ``PublicKeyCredentialRequestOptions`` JSON."""
        selection = self._client().get_assertion(options)  # type: ignore[arg-type]
        return dict(selection.get_response(0))
