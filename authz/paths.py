"""Request path normalisation that matches what Envoy forwards upstream.

The policy must see the same path the upstream service will route on, or a path such as
``/public/../admin`` could be allowed as ``/public`` and served as ``/admin``. This module
applies what Envoy's HTTP connection manager does with ``normalize_path: true`` and
``merge_slashes: true``: percent-encoded unreserved characters are decoded (RFC 3986 section
6.2.2.2), dot segments are removed (RFC 3986 section 5.2.4) and runs of slashes become one.
Encoded slashes and backslashes, and ``;`` path parameters, are rejected outright because
upstream frameworks disagree on what they mean.
"""

from __future__ import annotations

import re
import string

from authz.errors import AuthzError, Reason

MAX_PATH_CHARS = 4096

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# RFC 3986 section 3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@", plus "/".
# ";" is a sub-delimiter but is rejected separately as a path parameter.
_PATH_CHARS = re.compile(r"\A[A-Za-z0-9\-._~%!$&'()*+,;=:@/]*\Z")
_PERCENT_ESCAPE = re.compile(r"%(..)?", re.DOTALL)
_HEX_PAIR = re.compile(r"\A[0-9A-Fa-f]{2}\Z")


def normalize_path(raw_path: str) -> str:
    """Return the normalised path of a request target, without its query or fragment.

    Raises:
        AuthzError: ``path_invalid`` when the path is not an absolute path made of RFC 3986
            path characters, has a bad percent escape, an encoded ``/`` or ``\\``, or ``;``.
    """
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if len(path) > MAX_PATH_CHARS:
        raise AuthzError(Reason.PATH_INVALID, f"path is longer than {MAX_PATH_CHARS} characters")
    if not path.startswith("/"):
        raise AuthzError(Reason.PATH_INVALID, "path must start with '/'")
    if not _PATH_CHARS.match(path):
        raise AuthzError(Reason.PATH_INVALID, "path contains characters outside RFC 3986 pchar")
    if ";" in path:
        raise AuthzError(Reason.PATH_INVALID, "path parameters (';') are not accepted")

    decoded = _PERCENT_ESCAPE.sub(_normalize_escape, path)
    without_dots = remove_dot_segments(decoded)
    return re.sub(r"/{2,}", "/", without_dots)


def _normalize_escape(match: re.Match[str]) -> str:
    pair = match.group(1)
    if pair is None or not _HEX_PAIR.match(pair):
        raise AuthzError(Reason.PATH_INVALID, "path has a '%' not followed by two hex digits")
    character = chr(int(pair, 16))
    if character in "/\\":
        raise AuthzError(Reason.PATH_INVALID, "path contains an encoded '/' or '\\'")
    if character in _UNRESERVED:
        return character
    return "%" + pair.upper()


def remove_dot_segments(path: str) -> str:
    """Remove ``.`` and ``..`` segments from an absolute path (RFC 3986 section 5.2.4).

    A ``..`` at the root stays at the root, and a path ending in ``.`` or ``..`` keeps a
    trailing slash, as the RFC's algorithm does.
    """
    segments = path.split("/")[1:]
    output: list[str] = []
    for index, segment in enumerate(segments):
        is_last = index == len(segments) - 1
        if segment == ".":
            if is_last:
                output.append("")
        elif segment == "..":
            if output:
                output.pop()
            if is_last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)
