"""Run the ext_authz service: ``python -m authz.server --grpc-listen HOST:PORT ...``.

Loads the JWKS from a file or from the mint API, builds one decision core, and serves it over
gRPC, HTTP or both, with Prometheus metrics on their own listener when asked for.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import start_http_server as start_metrics_server

from authz.cache import DecisionCache, RevisionWatcher, TokenCache
from authz.decision import DecisionCore
from authz.grpc_service import start_grpc_server
from authz.http_service import start_http_server
from authz.keys import KeySet, KeySetError, fetch_jwks, key_set_from_jwks, load_key_set_file
from authz.opa import DEFAULT_TIMEOUT_SECONDS, OpaClient
from authz.replay import ReplayGuard
from authz.tls import TlsConfigError, TlsFiles
from authz.verify import DEFAULT_LEEWAY_SECONDS

logger = logging.getLogger("ztmint.authz.server")

# An estimate: one entry takes about 2 KiB (the token, its claims and the receipt),
# so a full token cache takes about 20 MiB.
DEFAULT_TOKEN_CACHE_SIZE = 10_000
DEFAULT_DECISION_CACHE_SIZE = 10_000
DEFAULT_REVISION_INTERVAL_SECONDS = 1.0
DEFAULT_REPLAY_CACHE_SIZE = 100_000
STOP_POLL_SECONDS = 0.2


class JwksRefresher:
    """Holds the current key set and replaces it from the JWKS URL every ``interval`` seconds.

    A failed refresh keeps the previous key set and logs a warning, so a mint API outage
    does not stop verification. Receipt keys dropped from the JWKS stay accepted as retired
    keys for the key set's grace period (see ``KeySet.rotated``).
    """

    def __init__(self, url: str, interval: float, initial: KeySet) -> None:
        self._url = url
        self._interval = interval
        self._keys = initial
        self._stop = threading.Event()

    def current(self) -> KeySet:
        """Return the key set in use."""
        return self._keys

    def refresh(self) -> None:
        """Fetch the JWKS once and swap the key set in, or keep the old one on failure."""
        try:
            self._keys = self._keys.rotated(fetch_jwks(self._url), int(time.time()))
        except KeySetError as exc:
            logger.warning(
                "jwks refresh failed, keeping previous keys url=%s error=%s", self._url, exc
            )

    def run(self) -> None:
        """Refresh until ``stop`` is called."""
        while not self._stop.wait(self._interval):
            self.refresh()

    def stop(self) -> None:
        """Stop the refresh loop."""
        self._stop.set()


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m authz.server", description=__doc__)
    parser.add_argument("--grpc-listen", help="HOST:PORT for the gRPC ext_authz service")
    parser.add_argument("--http-listen", help="HOST:PORT for the HTTP ext_authz service")
    parser.add_argument("--metrics-listen", help="HOST:PORT for Prometheus metrics")
    parser.add_argument(
        "--grpc-workers",
        type=_positive_int,
        default=8,
        help="threads that serve gRPC checks at once (default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
        help="lowest level logged (default %(default)s); allowed decisions log at DEBUG",
    )

    parser.add_argument("--opa-url", required=True, help="OPA base URL, e.g. http://127.0.0.1:8181")
    parser.add_argument(
        "--opa-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds to wait for OPA per connect/read (default %(default)s)",
    )

    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks-url", help="the mint API's /.well-known/jwks.json URL")
    keys.add_argument("--jwks-file", type=Path, help="a JWKS file")
    parser.add_argument(
        "--jwks-refresh",
        type=float,
        default=300.0,
        help="seconds between JWKS refreshes with --jwks-url (default %(default)s)",
    )

    parser.add_argument("--audience", required=True, help="the exact aud this service accepts")
    parser.add_argument("--issuer", required=True, help="the exact iss of the mint service")
    parser.add_argument(
        "--leeway",
        type=int,
        default=DEFAULT_LEEWAY_SECONDS,
        help="clock skew allowed on nbf/iat/exp, 0-30 seconds (default %(default)s)",
    )

    caches = parser.add_argument_group("caches")
    caches.add_argument(
        "--token-cache-size",
        type=_non_negative_int,
        default=DEFAULT_TOKEN_CACHE_SIZE,
        help="verified (token, receipt) pairs kept; 0 turns the cache off (default %(default)s)",
    )
    caches.add_argument(
        "--decision-cache-size",
        type=_non_negative_int,
        default=DEFAULT_DECISION_CACHE_SIZE,
        help="OPA decisions kept per bundle revision; 0 turns the cache off (default %(default)s)",
    )
    caches.add_argument(
        "--policy-revision-interval",
        type=float,
        default=DEFAULT_REVISION_INTERVAL_SECONDS,
        help="seconds between reads of OPA's bundle revision, the longest a decision of an"
        " older bundle can be served from the cache (default %(default)s)",
    )
    caches.add_argument(
        "--single-use-audience",
        action="append",
        default=[],
        metavar="AUDIENCE",
        help="reject a second use of any token for this audience (token_replayed); repeatable",
    )
    caches.add_argument(
        "--replay-cache-size",
        type=_positive_int,
        default=DEFAULT_REPLAY_CACHE_SIZE,
        help="unexpired jti values kept for single-use audiences (default %(default)s)",
    )

    tls = parser.add_argument_group("mutual TLS for --grpc-listen and --http-listen")
    tls.add_argument("--tls-cert", type=Path, help="server certificate chain (PEM)")
    tls.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    tls.add_argument("--tls-client-ca", type=Path, help="CA certificates for client certificates")
    return parser


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _tls_files(args: argparse.Namespace) -> TlsFiles | None:
    paths = (args.tls_cert, args.tls_key, args.tls_client_ca)
    if all(path is None for path in paths):
        return None
    if any(path is None for path in paths):
        raise TlsConfigError("mutual TLS needs all of --tls-cert, --tls-key and --tls-client-ca")
    return TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)


def build_core(
    args: argparse.Namespace, keys: Callable[[], KeySet], policy: OpaClient
) -> DecisionCore:
    """Build the decision core with the caches and replay guard that ``args`` ask for."""
    decision_cache = revision = None
    if args.decision_cache_size > 0:
        decision_cache = DecisionCache(args.decision_cache_size)
        revision = RevisionWatcher(policy.bundle_revision, time.time, args.policy_revision_interval)
    replay_guard = None
    if args.single_use_audience:
        replay_guard = ReplayGuard(args.single_use_audience, args.replay_cache_size, args.leeway)
    return DecisionCore(
        keys,
        policy,
        args.audience,
        args.issuer,
        leeway=args.leeway,
        token_cache=TokenCache(args.token_cache_size) if args.token_cache_size > 0 else None,
        decision_cache=decision_cache,
        policy_revision=revision,
        replay_guard=replay_guard,
    )


def main(argv: list[str] | None = None) -> int:
    """Start the configured listeners and serve until SIGINT or SIGTERM."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.log_level != "DEBUG":
        # httpx logs every OPA query at INFO, which cost about 4 % of GIL time at saturation
        # with caches off (bench/profile.py); keep those lines for DEBUG only.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.grpc_listen and not args.http_listen:
        logger.error("nothing to serve: pass --grpc-listen, --http-listen or both")
        return 2

    refresher: JwksRefresher | None = None
    try:
        if args.jwks_file is not None:
            initial = load_key_set_file(args.jwks_file)
        else:
            initial = key_set_from_jwks(fetch_jwks(args.jwks_url))
    except KeySetError as exc:
        logger.error("cannot load keys: %s", exc)
        return 1
    if args.jwks_url is not None:
        refresher = JwksRefresher(args.jwks_url, args.jwks_refresh, initial)
        threading.Thread(target=refresher.run, name="jwks-refresh", daemon=True).start()
        key_source = refresher.current
    else:

        def key_source() -> KeySet:
            return initial

    try:
        tls = _tls_files(args)
    except TlsConfigError as exc:
        logger.error("cannot configure tls: %s", exc)
        return 2
    policy = OpaClient(args.opa_url, timeout=args.opa_timeout)
    core = build_core(args, key_source, policy)
    logger.info(
        "keys loaded group_keys=%d receipt_keys=%d",
        len(initial.group_keys),
        len(initial.receipt_keys),
    )

    # The handlers only set a flag. Calling Event.set() from a handler deadlocks when a second
    # signal (Ctrl-C to the process group, then the parent's SIGTERM) arrives while the main
    # thread holds the Event's lock inside wait().
    stop_signals: list[int] = []
    signal.signal(signal.SIGTERM, lambda number, _frame: stop_signals.append(number))
    signal.signal(signal.SIGINT, lambda number, _frame: stop_signals.append(number))

    grpc_server = http_server = None
    try:
        if args.grpc_listen:
            grpc_server, _ = start_grpc_server(
                core, args.grpc_listen, max_workers=args.grpc_workers, tls=tls
            )
        if args.http_listen:
            host, port = _split_address(args.http_listen)
            http_server, _ = start_http_server(core, host, port, tls=tls)
    except TlsConfigError as exc:
        logger.error("cannot start tls listener: %s", exc)
        if grpc_server is not None:
            grpc_server.stop(grace=None)
        policy.close()
        return 1
    if args.metrics_listen:
        host, port = _split_address(args.metrics_listen)
        metrics_server, _ = start_metrics_server(port, addr=host, registry=core.metrics.registry)
        logger.info("metrics listening host=%s port=%d", host, metrics_server.server_port)

    while not stop_signals:
        time.sleep(STOP_POLL_SECONDS)
    logger.info("stopping signal=%d", stop_signals[0])
    if refresher is not None:
        refresher.stop()
    if grpc_server is not None:
        grpc_server.stop(grace=2).wait()
    if http_server is not None:
        http_server.shutdown()
    policy.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
