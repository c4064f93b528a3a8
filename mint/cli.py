"""The ``ztmint`` command line: enroll a key, get a token, verify the audit log.

Subcommands ``up``, ``demo`` and ``signers status`` are dispatched to ``mint.stack``,
``mint.demo`` and ``actors.status``, imported only when run so that the engineer commands
start fast and need no Ray.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from mint.audit_cli import add_audit_parser
from mint.breakglass_cli import add_breakglass_parser
from mint.browser import BrowserFlowError, receive_token
from mint.client import Authenticator, MintClientError, enroll, mint_token
from mint.kms import KmsError
from mint.rotation import add_kms_parser
from mint.softkey import SoftKeyError
from mint.stack import add_arguments as stack_arguments
from mint.users_cli import add_users_parser

DEFAULT_URL = "http://localhost:8080"
DEFAULT_KEY_FILE = Path("~/.config/ztmint/softkey.json")
_TTL_PATTERN = re.compile(r"\A([0-9]{1,6})([smh]?)\Z")
_TTL_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


class CliError(Exception):
    """A command failed; the message is printed to stderr and the exit status is 1."""


def parse_ttl(text: str) -> int:
    """Parse a lifetime such as ``15m``, ``900s``, ``1h`` or ``900`` into seconds."""
    match = _TTL_PATTERN.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid TTL {text!r}; use a number with s, m or h, for example 15m"
        )
    return int(match.group(1)) * _TTL_UNIT_SECONDS[match.group(2)]


def split_scopes(values: Sequence[str]) -> list[str]:
    """Flatten repeated and space-separated ``--scope`` values, keeping their order."""
    return [scope for value in values for scope in value.split()]


def origin_of(url: str) -> str:
    """Return the WebAuthn origin (scheme://host[:port]) of the mint URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"--url {url!r} is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc}"


def open_authenticator(kind: str, key_file: Path, origin: str) -> Authenticator:
    """Return the authenticator named by ``--authenticator``; there is no fallback."""
    if kind == "software":
        from mint.softkey import SoftwareAuthenticator

        return SoftwareAuthenticator(key_file.expanduser(), origin)
    if kind == "yubikey":
        from mint.yubikey import YubiKeyAuthenticator

        return YubiKeyAuthenticator(origin)
    raise CliError(f"--authenticator {kind!r} is unknown; use software or yubikey")


def _authenticator_from_args(args: argparse.Namespace) -> Authenticator:
    kind = args.authenticator or os.environ.get("ZTMINT_AUTHENTICATOR")
    if not kind:
        raise CliError("choose an authenticator with --authenticator software|yubikey")
    return open_authenticator(kind, Path(args.key_file), args.origin or origin_of(args.url))


def run_enroll(args: argparse.Namespace) -> int:
    """Register a new credential for ``--user`` with the chosen authenticator."""
    authenticator = _authenticator_from_args(args)
    result = enroll(args.url, args.user, authenticator, args.invitation)
    print(f"enrolled user {result['user']} credential {result['credential_id']}")
    return 0


def run_token(args: argparse.Namespace) -> int:
    """Mint a token for the requested scopes, audience and TTL and print it."""
    scopes = split_scopes(args.scope)
    if args.browser:
        minted = receive_token(args.url, args.user, scopes, args.aud, args.ttl).as_dict()
    else:
        authenticator = _authenticator_from_args(args)
        minted = mint_token(args.url, args.user, authenticator, scopes, args.aud, args.ttl)
    if args.json:
        print(json.dumps(minted, indent=2))
    else:
        print(f"token: {minted['token']}")
        print(f"receipt: {minted['receipt']}")
    return 0


def run_up(args: argparse.Namespace) -> int:
    """Start the local stack (``mint.stack``)."""
    from mint.stack import run

    return run(args)


def run_demo(args: argparse.Namespace) -> int:
    """Run the end-to-end demo (``mint.demo``)."""
    from mint.demo import run

    return run(args)


def run_signers_status(args: argparse.Namespace) -> int:
    """Show the signers and their health (``actors.status``)."""
    from actors.status import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``ztmint`` argument parser."""
    parser = argparse.ArgumentParser(prog="ztmint", description="Short-lived threshold tokens")
    commands = parser.add_subparsers(dest="command", required=True)

    enroll = commands.add_parser("enroll", help="register a security key with the mint")
    _add_client_arguments(enroll)
    enroll.add_argument(
        "--invitation",
        default=os.environ.get("ZTMINT_INVITATION") or None,
        help="invitation code from an operator's `ztmint users invite`; default "
        "$ZTMINT_INVITATION. Needed unless the mint runs with open enrollment",
    )
    enroll.set_defaults(handler=run_enroll)

    token = commands.add_parser("token", help="mint a token and print it with its receipt")
    _add_client_arguments(token)
    token.add_argument(
        "--scope",
        action="append",
        required=True,
        help="scope to request; repeat the option or separate scopes by spaces",
    )
    token.add_argument("--aud", required=True, help="audience: the service the token is for")
    token.add_argument(
        "--ttl", type=parse_ttl, default=parse_ttl("15m"), help="lifetime, e.g. 15m, 900s, 1h"
    )
    token.add_argument("--json", action="store_true", help="print the mint response as JSON")
    token.add_argument(
        "--browser",
        action="store_true",
        help="mint through the mint's web page in a browser, which sends the token back to a "
        "one-time listener on 127.0.0.1; needs no --authenticator",
    )
    token.set_defaults(handler=run_token)

    add_audit_parser(commands)
    add_users_parser(commands)
    add_breakglass_parser(commands)
    add_kms_parser(commands)

    up = commands.add_parser("up", help="start the local stack")
    stack_arguments(up)
    up.set_defaults(handler=run_up)
    demo = commands.add_parser("demo", help="run the end-to-end demo")
    demo.add_argument(
        "--state",
        type=Path,
        default=Path(".state/demo"),
        help="folder for the demo's state; emptied at start (default .state/demo)",
    )
    demo.set_defaults(handler=run_demo)
    signers = commands.add_parser("signers", help="signer mesh tools")
    signer_commands = signers.add_subparsers(dest="signers_command", required=True)
    status = signer_commands.add_parser("status", help="show every signer and its health")
    status.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS", "auto"),
        help="Ray cluster address (default $RAY_ADDRESS or auto: the local cluster)",
    )
    status.set_defaults(handler=run_signers_status)
    # actors.admin imports Ray and the lifecycle code only when a command runs.
    from actors.admin import add_guardian_parser, add_signer_lifecycle_parsers

    add_signer_lifecycle_parsers(signer_commands)
    add_guardian_parser(commands)
    return parser


def _add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("ZTMINT_URL", DEFAULT_URL), help="mint base URL"
    )
    parser.add_argument(
        "--user", default=os.environ.get("ZTMINT_USER") or getpass.getuser(), help="user id"
    )
    parser.add_argument(
        "--authenticator",
        choices=("software", "yubikey"),
        default=None,
        help="software (development key file) or yubikey (USB); default $ZTMINT_AUTHENTICATOR",
    )
    parser.add_argument(
        "--key-file",
        default=os.environ.get("ZTMINT_KEY_FILE", str(DEFAULT_KEY_FILE)),
        help="key file of the software authenticator",
    )
    parser.add_argument(
        "--origin",
        default=os.environ.get("ZTMINT_ORIGIN"),
        help="WebAuthn origin to present; default the origin of --url",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ztmint`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (CliError, MintClientError, SoftKeyError, BrowserFlowError, KmsError) as exc:
        print(f"ztmint: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
