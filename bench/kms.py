"""The KMS variants of the mint benchmark: the local key, or OCI KMS at a fixed round trip.

The OCI variants run the mint's real OCI client (``mint.kms_oci.OciKms`` through
``mint.kms_select``, with API key request signing) against the signature-checking mock in
``tests.support.ocimock`` on 127.0.0.1, which delays every sign response by a fixed time. The
delay simulates the network round trip to a Vault: 2 ms for one in the same region, 60 ms
for one in a remote region.

Limitations:
    The delay is fixed, with no jitter, no TLS handshake and no Vault-side queueing or
    throttling, so the numbers show the least that a remote KMS costs, not what OCI delivers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mint.kms_select import KmsSettings, kms_settings_from_env
from mint.settings import SettingsError
from tests.support.ocimock import KMS_KEY_ID, KMS_KEY_VERSION_ID, ApiKey, OciMock


@dataclass(frozen=True)
class KmsVariant:
    """One KMS the mint signs receipts and audit checkpoints with.

    Attributes:
        name: the ``--kms`` value, such as ``oci-60ms``.
        added_delay_seconds: the mock's delay per sign call, or None for the local key.
    """

    name: str
    added_delay_seconds: float | None

    def describe(self) -> str:
        """Return the line stored as ``kms`` in the result file."""
        if self.added_delay_seconds is None:
            return "local P-256 key (mint.kms.LocalKms)"
        delay_ms = self.added_delay_seconds * 1000
        return (
            "OCI KMS (mint.kms_oci.OciKms) against tests.support.ocimock on 127.0.0.1, "
            f"each sign response delayed by {delay_ms:g} ms"
        )


KMS_VARIANTS = {
    variant.name: variant
    for variant in (
        KmsVariant("local", None),
        KmsVariant("oci-2ms", 0.002),
        KmsVariant("oci-60ms", 0.060),
    )
}


@contextmanager
def kms_settings_for(variant: KmsVariant, folder: Path) -> Iterator[KmsSettings]:
    """Start what ``variant`` needs and yield the mint's KMS settings for it.

    For an OCI variant this generates an API key, writes its OCI config file into ``folder``,
    starts the mock with the variant's delay and stops it on exit. The settings are read by
    ``mint.kms_select.kms_settings_from_env`` from the same ``ZTMINT_*`` variables a deployed
    mint reads.
    """
    if variant.added_delay_seconds is None:
        yield KmsSettings()
        return
    folder.mkdir(parents=True, exist_ok=True)
    api_key = ApiKey.generate()
    config_file = api_key.write_config(folder)
    mock = OciMock(api_key, added_delay_seconds=variant.added_delay_seconds)
    mock.start()
    try:
        env = {
            "ZTMINT_KMS": "oci",
            "ZTMINT_OCI_KEY_ID": KMS_KEY_ID,
            "ZTMINT_OCI_KEY_VERSION_ID": KMS_KEY_VERSION_ID,
            "ZTMINT_OCI_CRYPTO_ENDPOINT": mock.url,
            "ZTMINT_OCI_MANAGEMENT_ENDPOINT": mock.url,
            "ZTMINT_OCI_CONFIG_FILE": str(config_file),
        }
        yield kms_settings_from_env(env, SettingsError)
    finally:
        mock.stop()
