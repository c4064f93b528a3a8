"""Path normalisation as Envoy's normalize_path and merge_slashes do it."""

from __future__ import annotations

import pytest

from authz.errors import AuthzError, Reason
from authz.paths import normalize_path, remove_dot_segments


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/orders/7", "/orders/7"),
        ("/orders/7?debug=1", "/orders/7"),
        ("/orders/7#frag", "/orders/7"),
        ("/public/../admin", "/admin"),
        ("/orders/./7", "/orders/7"),
        ("/orders/7/..", "/orders/"),
        ("/..", "/"),
        ("/../../orders", "/orders"),
        ("//orders///7", "/orders/7"),
        ("/a//../b", "/a/b"),
        ("/%6Frders/7", "/orders/7"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/%2E%2E/admin", "/admin"),
        ("/orders/%7e", "/orders/~"),
        ("/orders/a%20b", "/orders/a%20b"),
        ("/orders/a%3fb", "/orders/a%3Fb"),
        ("/", "/"),
    ],
)
def test_normalize_path_matches_envoy(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "/orders%2F7",
        "/orders%2f..%2fadmin",
        "/orders%5C7",
        "/orders%5c7",
        "/orders;jsessionid=1/7",
        "/orders/7;v=2",
        "/orders\\7",
        "/orders/%zz",
        "/orders/%4",
        "/orders/%",
        "orders/7",
        "",
        "*",
        "/orders/\u00e9",
        "/orders/a b",
        "/orders/\x00",
        "/" + "a" * 4096,
    ],
)
def test_normalize_path_rejects(raw: str) -> None:
    with pytest.raises(AuthzError) as raised:
        normalize_path(raw)

    assert raised.value.reason == Reason.PATH_INVALID


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # RFC 3986 section 5.2.4 examples, written as absolute paths.
        ("/a/b/c/./../../g", "/a/g"),
        ("/mid/content=5/../6", "/mid/6"),
        ("/a/.", "/a/"),
        ("/.", "/"),
    ],
)
def test_remove_dot_segments_follows_rfc3986(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected
