"""``ztmint users``: operator commands for enrollment invitations and credentials.

- ``ztmint users invite --user U [--ttl 24h]`` creates a one-time invitation and prints its
  code once; the user enrolls with ``ztmint enroll --invitation CODE``.
- ``ztmint users list`` prints every user with their credential counts.
- ``ztmint users revoke --user U`` deletes every credential of the user, who then needs a new
  invitation to enroll again.

Each command opens the mint's database directly: the SQLite file in ``--state`` (default
``$ZTMINT_STATE_DIR`` or ``.ztmint``) or PostgreSQL at ``--database-url`` (default
``$ZTMINT_DATABASE_URL``). Run them on a host that may write the mint's state.

Limitations:
    These commands change the database without going through the mint service, so they
    are not in the mint's audit log. The CLI prints what it did, and the mint's audit log
    records every enrollment, including those that used an invitation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mint.errors import MintError
from mint.invitations import DEFAULT_INVITATION_TTL_SECONDS, create_invitation
from mint.requests import check_user
from mint.store import Store
from mint.store_postgres import open_store

Handler = Callable[[argparse.Namespace], int]
_TTL_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_invitation_ttl(text: str) -> int:
    """Parse an invitation lifetime such as ``24h``, ``90m``, ``7d`` or ``3600`` into seconds."""
    stripped = text.strip()
    unit = stripped[-1:] if stripped[-1:] in _TTL_UNIT_SECONDS else "s"
    number = stripped[:-1] if stripped[-1:] in _TTL_UNIT_SECONDS else stripped
    if not number.isdigit() or len(number) > 7 or int(number) == 0:
        raise argparse.ArgumentTypeError(
            f"invalid invitation TTL {text!r}; use a positive number with s, m, h or d, e.g. 24h"
        )
    return int(number) * _TTL_UNIT_SECONDS[unit]


def open_user_store(args: argparse.Namespace) -> Store:
    """Open the mint database named by ``--database-url`` or ``--state``."""
    return open_store(args.database_url, Path(args.state) / "mint.sqlite3")


def run_invite(args: argparse.Namespace) -> int:
    """Create an invitation for ``--user`` and print its code once."""
    user = check_user(args.user)
    store = open_user_store(args)
    code = create_invitation(store, user, args.ttl, int(time.time()), os.urandom)
    expires = datetime.fromtimestamp(int(time.time()) + args.ttl, UTC).isoformat()
    print(f"invitation for {user}, valid once until {expires}:", file=sys.stderr)
    print(code)
    print(f"enroll with: ztmint enroll --user {user} --invitation CODE", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print every user with the number of credentials and of credentials flagged as cloned."""
    users = open_user_store(args).list_users()
    print(f"{'user':<40} {'credentials':>11} {'cloned':>6}  created")
    for user in users:
        created = datetime.fromtimestamp(user.created_at, UTC).isoformat()
        print(f"{user.user_id:<40} {user.credentials:>11} {user.flagged_cloned:>6}  {created}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    """Delete every credential of ``--user``."""
    user = check_user(args.user)
    removed = open_user_store(args).revoke_credentials(user)
    print(f"revoked {removed} credential(s) of {user}")
    return 0 if removed else 1


def add_users_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``ztmint users invite|list|revoke`` to the ``ztmint`` parser."""
    users = commands.add_parser("users", help="enrollment invitations and credentials")
    user_commands = users.add_subparsers(dest="users_command", required=True)

    invite = user_commands.add_parser("invite", help="create a one-time enrollment invitation")
    invite.add_argument("--user", required=True, help="user id the invitation is for")
    invite.add_argument(
        "--ttl",
        type=parse_invitation_ttl,
        default=DEFAULT_INVITATION_TTL_SECONDS,
        help="how long the invitation is valid, e.g. 24h, 90m, 7d (default 24h, at most 30d)",
    )
    invite.set_defaults(handler=_guarded(run_invite))

    listing = user_commands.add_parser("list", help="list users and their credentials")
    listing.set_defaults(handler=_guarded(run_list))

    revoke = user_commands.add_parser("revoke", help="delete every credential of a user")
    revoke.add_argument("--user", required=True, help="user id whose credentials to delete")
    revoke.set_defaults(handler=_guarded(run_revoke))

    for command in (invite, listing, revoke):
        command.add_argument(
            "--state",
            default=os.environ.get("ZTMINT_STATE_DIR", ".ztmint"),
            help="the mint's state folder holding mint.sqlite3 (default $ZTMINT_STATE_DIR "
            "or .ztmint)",
        )
        command.add_argument(
            "--database-url",
            default=os.environ.get("ZTMINT_DATABASE_URL") or None,
            help="PostgreSQL URL of the mint's store; default $ZTMINT_DATABASE_URL",
        )


def _guarded(handler: Handler) -> Handler:
    """Turn an invalid user id or TTL into a message on stderr and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (MintError, ValueError) as exc:
            detail = exc.detail if isinstance(exc, MintError) else str(exc)
            print(f"ztmint users: {detail}", file=sys.stderr)
            return 1

    return run
