"""Assemble the mint app for the local stack from a state folder and a token signer."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI

from mint.app import create_app, service_from_settings
from mint.settings import Settings
from mint.signing import TokenSigner


def build_app(state_dir: Path, signer: TokenSigner, public_url: str) -> FastAPI:
    """Build the mint FastAPI app with the embedded backends under ``state_dir/mint``.

    ``public_url`` is the URL engineers use; its host is the WebAuthn relying party id and the
    URL is both the accepted origin and the ``iss`` of every token.
    """
    parts = urlsplit(public_url)
    settings = Settings(
        rp_id=parts.hostname or "localhost",
        origin=public_url,
        issuer=public_url,
        state_dir=state_dir / "mint",
        port=parts.port or 80,
    )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return create_app(service_from_settings(settings, signer), settings)
