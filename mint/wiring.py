"""Assemble the mint app for the local stack from a state folder and a token signer."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI

from mint.app import create_app, service_from_settings
from mint.settings import settings_from_env
from mint.signing import TokenSigner


def build_app(state_dir: Path, signer: TokenSigner, public_url: str, opa_url: str) -> FastAPI:
    """Build the mint FastAPI app with the embedded backends under ``state_dir/mint``.

    ``public_url`` is the URL engineers use. Its host is the WebAuthn relying party id, and
    the URL is both the accepted origin and the ``iss`` of every token. ``opa_url`` is the OPA
    server with the ``ztmint.mint`` policy. Every other setting (KMS backend, database, limits,
    enrollment mode) comes from the ``ZTMINT_*`` environment variables, as for
    ``python -m mint.server``.
    """
    base = settings_from_env(os.environ)
    parts = urlsplit(public_url)
    settings = dataclasses.replace(
        base,
        rp_id=parts.hostname or "localhost",
        origin=public_url,
        issuer=public_url,
        state_dir=state_dir / "mint",
        port=parts.port or 80,
        guard=dataclasses.replace(base.guard, opa_url=opa_url),
    )
    settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return create_app(service_from_settings(settings, signer), settings)
