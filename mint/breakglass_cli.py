"""``ztmint breakglass``: file, approve and mint with a break-glass request from the CLI.

- ``ztmint breakglass request --scope S --aud A --duration 30m --reason "..."`` files a
  request with the requester's assertion and prints its id.
- ``ztmint breakglass approve ID`` shows the request to a guardian and sends the guardian's
  assertion, which needs user verification (PIN or biometrics).
- ``ztmint breakglass mint ID`` mints the request's one token once t_g guardians approved.

The HTTP calls are plain functions so that tests and scripts can use them without argparse.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from mint.client import HTTP_TIMEOUT_SECONDS, Authenticator, MintClientError, post_json


def request_breakglass(
    url: str,
    user: str,
    authenticator: Authenticator,
    scopes: Sequence[str],
    audience: str,
    duration_seconds: int,
    reason: str,
) -> dict[str, Any]:
    """File a break-glass request as ``user``; return the stored request."""
    fields = {
        "scopes": list(scopes),
        "audience": audience,
        "duration_seconds": duration_seconds,
        "reason": reason,
    }
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        started = post_json(client, "/breakglass/assert", {"user": user, **fields})
        assertion = authenticator.authenticate(started["publicKey"])
        return post_json(
            client,
            "/breakglass",
            {"challenge_id": started["challenge_id"], **fields, "assertion": assertion},
        )


def describe_breakglass(url: str, request_id: str) -> dict[str, Any]:
    """Return the stored request, its approvals and the guardians' WebAuthn options."""
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        try:
            response = client.get(f"/breakglass/{request_id}")
        except httpx.HTTPError as exc:
            raise MintClientError("unreachable", f"cannot reach the mint at {url}: {exc}") from exc
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.status_code != 200:
        reason = str(payload.get("error", f"http_{response.status_code}"))
        raise MintClientError(reason, str(payload.get("message", response.reason_phrase)))
    return payload


def approve_breakglass(
    url: str, guardian: str, authenticator: Authenticator, described: dict[str, Any]
) -> dict[str, Any]:
    """Approve the request ``described`` (from ``describe_breakglass``) as ``guardian``."""
    assertion = authenticator.authenticate(described["publicKey"])
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        return post_json(
            client,
            f"/breakglass/{described['request_id']}/approve",
            {"guardian": guardian, "assertion": assertion},
        )


def mint_breakglass(
    url: str,
    user: str,
    authenticator: Authenticator,
    request_id: str,
    ttl_seconds: int | None = None,
) -> dict[str, Any]:
    """Mint the request's token as its requester; return the mint's response.

    Security:
        The response carries the token and its receipt: bearer credentials. Do not log it.
    """
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        started = post_json(
            client, f"/breakglass/{request_id}/assert", {"user": user, "ttl_seconds": ttl_seconds}
        )
        assertion = authenticator.authenticate(started["publicKey"])
        return post_json(
            client,
            f"/breakglass/{request_id}/mint",
            {
                "challenge_id": started["challenge_id"],
                "ttl_seconds": started["ttl_seconds"],
                "assertion": assertion,
            },
        )


def open_guardian_authenticator(args: argparse.Namespace) -> Authenticator:
    """Return the guardian's authenticator; the software one claims user verification."""
    from mint.cli import CliError, open_authenticator, origin_of

    kind = args.authenticator or os.environ.get("ZTMINT_AUTHENTICATOR")
    if not kind:
        raise CliError("choose an authenticator with --authenticator software|yubikey")
    origin = args.origin or origin_of(args.url)
    if kind == "software":
        from mint.softkey import SoftwareAuthenticator

        return SoftwareAuthenticator(Path(args.key_file).expanduser(), origin, user_verified=True)
    return open_authenticator(kind, Path(args.key_file), origin)


def run_request(args: argparse.Namespace) -> int:
    """File a request and print its id and what the guardians must do next."""
    from mint.cli import _authenticator_from_args, split_scopes

    filed = request_breakglass(
        args.url,
        args.user,
        _authenticator_from_args(args),
        split_scopes(args.scope),
        args.aud,
        args.duration,
        args.reason,
    )
    print(f"break-glass request {filed['request_id']} filed, expires at {filed['expires_at']}")
    print(
        f"{filed['threshold']} guardians must run: ztmint breakglass approve {filed['request_id']}"
    )
    return 0


def run_approve(args: argparse.Namespace) -> int:
    """Show the request to the guardian, then approve it with their authenticator."""
    described = describe_breakglass(args.url, args.request_id)
    summary = {
        name: described[name]
        for name in ("request_id", "requester", "reason", "scopes", "audience", "expires_at")
    }
    print("approving break-glass request:", file=sys.stderr)
    print(json.dumps(summary, indent=2), file=sys.stderr)
    approved = approve_breakglass(args.url, args.user, open_guardian_authenticator(args), described)
    print(
        f"approved request {approved['request_id']}: {len(approved['approvals'])} of "
        f"{approved['threshold']} guardians"
    )
    return 0


def run_mint(args: argparse.Namespace) -> int:
    """Mint the request's token and print it with its receipt."""
    from mint.cli import _authenticator_from_args

    minted = mint_breakglass(
        args.url, args.user, _authenticator_from_args(args), args.request_id, args.ttl
    )
    if args.json:
        print(json.dumps(minted, indent=2))
    else:
        print(f"token: {minted['token']}")
        print(f"receipt: {minted['receipt']}")
    return 0


def add_breakglass_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``ztmint breakglass request|approve|mint`` to the ``ztmint`` subcommands."""
    from mint.cli import _add_client_arguments, parse_ttl

    breakglass = commands.add_parser("breakglass", help="emergency tokens approved by guardians")
    actions = breakglass.add_subparsers(dest="breakglass_command", required=True)

    request = actions.add_parser("request", help="file a break-glass request")
    _add_client_arguments(request)
    request.add_argument(
        "--scope", action="append", required=True, help="scope to request; repeat for more"
    )
    request.add_argument("--aud", required=True, help="audience: the service the token is for")
    request.add_argument(
        "--duration",
        type=parse_ttl,
        default=parse_ttl("30m"),
        help="how long the access may last, 5m to 1h, e.g. 30m (default 30m)",
    )
    request.add_argument("--reason", required=True, help="why the emergency access is needed")
    request.set_defaults(handler=run_request)

    approve = actions.add_parser("approve", help="approve a request as a guardian")
    _add_client_arguments(approve)
    approve.add_argument("request_id", help="the id printed by `ztmint breakglass request`")
    approve.set_defaults(handler=run_approve)

    mint = actions.add_parser("mint", help="mint the token of an approved request")
    _add_client_arguments(mint)
    mint.add_argument("request_id", help="the id printed by `ztmint breakglass request`")
    mint.add_argument(
        "--ttl",
        type=parse_ttl,
        default=None,
        help="token lifetime, e.g. 15m; default the longest that ends before the request expires",
    )
    mint.add_argument("--json", action="store_true", help="print the mint response as JSON")
    mint.set_defaults(handler=run_mint)
