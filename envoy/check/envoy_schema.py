"""Load Envoy v3 configuration files into Envoy's own proto types and check their rules.

A YAML file is parsed with ``google.protobuf.json_format.ParseDict`` (with
``ignore_unknown_fields=False``) into ``envoy.config.bootstrap.v3.Bootstrap`` or, for the SDS
files that Envoy reads through ``path_config_source``, into
``envoy.service.discovery.v3.DiscoveryResponse``, using the generated types of the xds-protos
package. Every ``typed_config`` and other ``google.protobuf.Any`` is resolved into the message
its ``@type`` names, so a misspelled field or an unknown enum name anywhere fails the load.
``pgv_rules`` then applies the protoc-gen-validate rules that Envoy enforces at load time.

Usage, from the repository root::

    .venv/bin/python envoy/check/envoy_schema.py envoy/*.yaml
    .venv/bin/python envoy/check/envoy_schema.py --message discovery-response envoy/sds/*.yaml

The exit status is 0 when every file is valid, 1 when a file is invalid and 2 on a usage error.

Limitations:
    Envoy checks more than its schema when it loads a configuration (that clusters named by
    filters exist, that files exist, that listener addresses do not clash). Only
    ``envoy --mode validate`` covers those checks. PyYAML reads YAML 1.1, so unquoted ``yes``,
    ``no``, ``on`` and ``off`` become booleans here, while Envoy's YAML 1.2 reader keeps them
    as strings.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pgv_rules
import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format, message, symbol_database
from pgv_rules import Violation

TYPE_URL_PREFIX = "type.googleapis.com/"

MESSAGE_TYPES: dict[str, type[message.Message]] = {
    "bootstrap": bootstrap_pb2.Bootstrap,
    "discovery-response": discovery_pb2.DiscoveryResponse,
}


class EnvoySchemaError(Exception):
    """Base class for configuration files that cannot be loaded at all."""


class ConfigParseError(EnvoySchemaError):
    """A file is not YAML, or does not match the Envoy v3 schema of its message type."""


def load_config(
    document: Mapping[str, Any], message_type: type[message.Message]
) -> message.Message:
    """Parse a configuration document into ``message_type``, resolving every Any.

    Args:
        document: The configuration as parsed from YAML or JSON.
        message_type: The generated class of the top-level message, from ``MESSAGE_TYPES``.

    Returns:
        The parsed message.

    Raises:
        ConfigParseError: A field name is unknown, a value has the wrong type, an enum name is
            not defined, or an ``@type`` names a type that xds-protos does not contain.
    """
    for type_url in _type_urls(document):
        _import_defining_package(type_url)
    parsed = message_type()
    try:
        json_format.ParseDict(document, parsed, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise ConfigParseError(
            f"does not match the Envoy v3 schema of {message_type.DESCRIPTOR.full_name}: {error}"
        ) from error
    return parsed


def load_config_file(path: Path, message_type: type[message.Message]) -> message.Message:
    """Read a YAML file and parse it with ``load_config``.

    Raises:
        ConfigParseError: The file is not valid YAML, its top level is not a mapping, or it
            does not match the schema.
        OSError: The file cannot be read.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigParseError(f"invalid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ConfigParseError(
            f"top level is a {type(document).__name__}, but a mapping of "
            f"{message_type.DESCRIPTOR.full_name} fields is expected"
        )
    return load_config(document, message_type)


def check_config(
    document: Mapping[str, Any], message_type: type[message.Message]
) -> list[Violation]:
    """Parse a configuration document and return its protoc-gen-validate violations.

    Raises:
        ConfigParseError: As for ``load_config``.
        pgv_rules.RuleError: A rule in the schema could not be evaluated.
    """
    return pgv_rules.find_violations(load_config(document, message_type))


def check_file(path: Path, message_type: type[message.Message]) -> list[Violation]:
    """Read, parse and check one configuration file.

    Raises:
        ConfigParseError: As for ``load_config_file``.
        pgv_rules.RuleError: A rule in the schema could not be evaluated.
        OSError: The file cannot be read.
    """
    return pgv_rules.find_violations(load_config_file(path, message_type))


def _type_urls(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        type_url = node.get("@type")
        if isinstance(type_url, str):
            yield type_url
        for value in node.values():
            yield from _type_urls(value)
    elif isinstance(node, list):
        for item in node:
            yield from _type_urls(item)


def _import_defining_package(type_url: str) -> None:
    """Import every ``*_pb2`` module of the package that should define ``type_url``.

    ``ParseDict`` resolves ``@type`` through the default descriptor pool, which only contains
    the modules imported so far. The proto package of a type is also its Python package in
    xds-protos, so importing that package's modules registers the type without a hand-kept list.
    """
    type_name = type_url.removeprefix(TYPE_URL_PREFIX)
    pool = symbol_database.Default().pool
    try:
        pool.FindMessageTypeByName(type_name)
        return
    except KeyError:
        pass

    package_name = type_name.rpartition(".")[0]
    try:
        spec = importlib.util.find_spec(package_name)
    except ModuleNotFoundError:
        spec = None
    # A type from an unknown package stays unresolved, so ParseDict reports it by name.
    if spec is None or spec.submodule_search_locations is None:
        return
    for module in pkgutil.iter_modules(spec.submodule_search_locations):
        if module.name.endswith("_pb2"):
            importlib.import_module(f"{package_name}.{module.name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Check configuration files and print one line per file or violation."""
    parser = argparse.ArgumentParser(
        description="Check Envoy v3 configuration files against Envoy's proto schema and "
        "its protoc-gen-validate rules."
    )
    parser.add_argument(
        "--message",
        choices=sorted(MESSAGE_TYPES),
        default="bootstrap",
        help="top-level message type of every file (default: bootstrap)",
    )
    parser.add_argument("files", nargs="+", type=Path, help="YAML files to check")
    arguments = parser.parse_args(argv)

    message_type = MESSAGE_TYPES[arguments.message]
    failed = False
    for path in arguments.files:
        try:
            violations = check_file(path, message_type)
        except (EnvoySchemaError, pgv_rules.RuleError, OSError) as error:
            print(f"{path}: {error}")
            failed = True
            continue
        for violation in violations:
            print(f"{path}: {violation}")
        failed = failed or bool(violations)
        if not violations:
            print(f"{path}: OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
