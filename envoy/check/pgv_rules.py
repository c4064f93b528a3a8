"""Evaluate protoc-gen-validate rules on parsed Envoy configuration messages.

Envoy's API protos carry their constraints as protoc-gen-validate (PGV) options
(``validate.rules`` on fields, ``validate.required`` on oneofs, ``validate.disabled`` and
``validate.ignored`` on messages; see https://github.com/bufbuild/protoc-gen-validate). Envoy
enforces them when it loads a configuration, but protobuf's ``json_format.ParseDict`` does not,
so a negative timeout or an empty cluster name parses without complaint. This module reads the
options from the descriptors that the xds-protos package ships and applies them, descending
into the content of every ``google.protobuf.Any``.

It also reports every field or enum value that the schema marks ``deprecated``, because Envoy
warns about those and rejects them once they are removed. And it reports every negative
``google.protobuf.Duration``. Envoy's ``DurationUtil`` (source/common/protobuf/utility.cc)
rejects negative durations when it converts them, also on fields that have no PGV rule, such as
the ext_authz ``grpc_service.timeout``.

Limitations:
    Timestamp rules relative to the current time (``lt_now``, ``gt_now``, ``within``), byte
    patterns and the ``email`` and ``uri_ref`` well-known string formats are not implemented.
    A rule that this module does not implement raises ``UnsupportedRuleError`` instead of
    passing silently. Regular expressions run on Python's ``re``, not RE2, which agree on the
    patterns in Envoy's protos but differ on some syntax.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf import any_pb2, descriptor, message, message_factory, symbol_database
from google.protobuf.descriptor import FieldDescriptor
from validate import validate_pb2

NUMERIC_RULES = frozenset(
    {
        "float",
        "double",
        "int32",
        "int64",
        "uint32",
        "uint64",
        "sint32",
        "sint64",
        "fixed32",
        "fixed64",
        "sfixed32",
        "sfixed64",
    }
)
WRAPPER_TYPES = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
SUPPORTED_RULES: dict[str, frozenset[str]] = {
    **{
        kind: frozenset({"const", "lt", "lte", "gt", "gte", "in", "not_in", "ignore_empty"})
        for kind in NUMERIC_RULES
    },
    "bool": frozenset({"const"}),
    "string": frozenset(
        {
            "const",
            "len",
            "min_len",
            "max_len",
            "len_bytes",
            "min_bytes",
            "max_bytes",
            "pattern",
            "prefix",
            "suffix",
            "contains",
            "not_contains",
            "in",
            "not_in",
            "hostname",
            "ip",
            "ipv4",
            "ipv6",
            "address",
            "uri",
            "uuid",
            "well_known_regex",
            "strict",
            "ignore_empty",
        }
    ),
    "bytes": frozenset(
        {"const", "len", "min_len", "max_len", "prefix", "suffix", "contains", "in", "not_in"}
        | {"ignore_empty"}
    ),
    "enum": frozenset({"const", "defined_only", "in", "not_in"}),
    "duration": frozenset({"required", "const", "lt", "lte", "gt", "gte", "in", "not_in"}),
    "timestamp": frozenset({"required", "const", "lt", "lte", "gt", "gte"}),
    "any": frozenset({"required", "in", "not_in"}),
    "repeated": frozenset({"min_items", "max_items", "unique", "items", "ignore_empty"}),
    "map": frozenset({"min_pairs", "max_pairs", "no_sparse", "keys", "values", "ignore_empty"}),
}

# The patterns that protoc-gen-validate generates for KnownRegex. With strict=false, both
# header names and values only have to be free of NUL, LF and CR.
HEADER_NAME_STRICT = re.compile(r"^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$")
HEADER_VALUE_STRICT = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]*$")
HEADER_LOOSE = re.compile(r"^[^\x00\x0a\x0d]*$")
HOSTNAME_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class RuleError(Exception):
    """Base class for failures of the rule evaluation itself (not of the configuration)."""


class UnsupportedRuleError(RuleError):
    """A field carries a protoc-gen-validate rule that this module does not implement."""


@dataclass(frozen=True)
class Violation:
    """One rule that a configuration breaks.

    Attributes:
        path: Field path from the top-level message, with ``[i]`` for list items, ``[key]`` for
            map values and ``<type>`` after an Any whose content follows.
        message: What the rule requires, in the words of the rule.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def find_violations(root: message.Message) -> list[Violation]:
    """Check every PGV rule and deprecation mark in ``root`` and the messages below it.

    Args:
        root: A parsed message, for example an ``envoy.config.bootstrap.v3.Bootstrap``.

    Returns:
        Every violation found, in field order. The list is empty when the message is valid.

    Raises:
        UnsupportedRuleError: A field that applies carries a rule this module cannot evaluate.
        RuleError: An Any names a type that is not in the descriptor pool.
    """
    violations: list[Violation] = []
    _walk_message(root, "", violations)
    return violations


def _walk_message(msg: message.Message, path: str, out: list[Violation]) -> None:
    options = msg.DESCRIPTOR.GetOptions()
    if options.Extensions[validate_pb2.disabled] or options.Extensions[validate_pb2.ignored]:
        return

    for oneof in msg.DESCRIPTOR.oneofs:
        required = oneof.GetOptions().Extensions[validate_pb2.required]
        if required and msg.WhichOneof(oneof.name) is None:
            names = ", ".join(field.name for field in oneof.fields)
            out.append(Violation(_join(path, oneof.name), f"exactly one of {names} is required"))

    for field in msg.DESCRIPTOR.fields:
        field_path = _join(path, field.name)
        rules = _field_rules(field)
        if rules is not None and _rules_apply(msg, field):
            _check_field(msg, field, rules, field_path, out)

    for field, value in msg.ListFields():
        field_path = _join(path, field.name)
        if field.GetOptions().deprecated:
            out.append(Violation(field_path, f"field {field.full_name} is deprecated"))
        rules = _field_rules(field)
        if rules is not None and rules.message.skip:
            continue
        for item_path, item, item_field in _items(field, value, field_path):
            _walk_value(item_field, item, item_path, out)


def _walk_value(field: FieldDescriptor, value: Any, path: str, out: list[Violation]) -> None:
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        if enum_value is not None and enum_value.GetOptions().deprecated:
            out.append(Violation(path, f"enum value {enum_value.full_name} is deprecated"))
        return
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return
    if field.message_type.full_name == "google.protobuf.Duration":
        if value.seconds < 0 or value.nanos < 0:
            out.append(Violation(path, f"duration {value.ToJsonString()} is negative"))
        return
    if field.message_type.full_name != "google.protobuf.Any":
        _walk_message(value, path, out)
        return

    content = unpack_any(value)
    content_path = f"{path}<{content.DESCRIPTOR.full_name}>"
    _walk_message(content, content_path, out)


def unpack_any(packed: any_pb2.Any) -> message.Message:
    """Unpack an Any into a new message of the type its type URL names.

    Raises:
        RuleError: The type is not in the default descriptor pool; import its ``*_pb2``
            module first.
    """
    type_name = packed.TypeName()
    try:
        message_descriptor = symbol_database.Default().pool.FindMessageTypeByName(type_name)
    except KeyError as error:
        raise RuleError(
            f"cannot unpack Any of type {packed.type_url!r}: the type is not in the descriptor "
            "pool; import the module that defines it"
        ) from error
    content = message_factory.GetMessageClass(message_descriptor)()
    if not packed.Unpack(content):
        raise RuleError(f"cannot unpack Any of type {packed.type_url!r}: content does not parse")
    return content


def _items(
    field: FieldDescriptor, value: Any, path: str
) -> Iterable[tuple[str, Any, FieldDescriptor]]:
    if _is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        for key in sorted(value):
            yield f"{path}[{key}]", value[key], value_field
    elif field.is_repeated:
        for index, item in enumerate(value):
            yield f"{path}[{index}]", item, field
    else:
        yield path, value, field


def _field_rules(field: FieldDescriptor) -> validate_pb2.FieldRules | None:
    options = field.GetOptions()
    if not options.HasExtension(validate_pb2.rules):
        return None
    return options.Extensions[validate_pb2.rules]


def _rules_apply(msg: message.Message, field: FieldDescriptor) -> bool:
    """Return whether PGV evaluates a field's rules, which it skips for unset oneof members."""
    oneof = field.containing_oneof
    if oneof is not None and not _is_synthetic(oneof):
        return msg.WhichOneof(oneof.name) == field.name
    return True


def _check_field(
    msg: message.Message,
    field: FieldDescriptor,
    rules: validate_pb2.FieldRules,
    path: str,
    out: list[Violation],
) -> None:
    value = getattr(msg, field.name)
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    is_list = field.is_repeated

    if not is_list and is_message and rules.message.required and not msg.HasField(field.name):
        out.append(Violation(path, "value is required"))
        return

    kind = rules.WhichOneof("type")
    if kind is None:
        return
    if is_list:
        _check_value(kind, rules, field, value, path, out)
        return
    if field.has_presence and not msg.HasField(field.name):
        if kind in {"duration", "timestamp", "any"} and getattr(rules, kind).required:
            out.append(Violation(path, "value is required"))
        return
    if is_message and field.message_type.full_name in WRAPPER_TYPES:
        value = value.value
    _check_value(kind, rules, field, value, path, out)


def _check_value(
    kind: str,
    rules: validate_pb2.FieldRules,
    field: FieldDescriptor,
    value: Any,
    path: str,
    out: list[Violation],
) -> None:
    typed = getattr(rules, kind)
    unsupported = {name.name for name, _ in typed.ListFields()} - SUPPORTED_RULES.get(
        kind, frozenset()
    )
    if unsupported:
        raise UnsupportedRuleError(
            f"{path}: {kind} rule(s) {sorted(unsupported)} on {field.full_name} are not "
            "implemented by pgv_rules; extend pgv_rules.py or check this file with envoy-check"
        )

    checker = _CHECKERS.get(kind)
    if checker is None:
        checker = _check_number
    for message_text in checker(typed, value, field):
        out.append(Violation(path, message_text))

    if kind == "repeated" and typed.HasField("items"):
        for index, item in enumerate(value):
            _check_item(typed.items, field, item, f"{path}[{index}]", out)
    if kind == "map":
        entry = field.message_type
        for key in sorted(value):
            if typed.HasField("keys"):
                key_field = entry.fields_by_name["key"]
                _check_item(typed.keys, key_field, key, f"{path}[{key}].key", out)
            if typed.HasField("values"):
                value_field = entry.fields_by_name["value"]
                _check_item(typed.values, value_field, value[key], f"{path}[{key}]", out)


def _check_item(
    rules: validate_pb2.FieldRules,
    field: FieldDescriptor,
    item: Any,
    path: str,
    out: list[Violation],
) -> None:
    kind = rules.WhichOneof("type")
    if kind is None:
        return
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name in WRAPPER_TYPES:
        item = item.value
    _check_value(kind, rules, field, item, path, out)


def _check_number(rules: Any, value: float, field: FieldDescriptor) -> list[str]:
    if rules.ignore_empty and value == 0:
        return []
    return _check_ordered(rules, value, lambda bound: bound)


def _check_ordered(rules: Any, value: Any, to_key: Callable[[Any], Any]) -> list[str]:
    """Apply const, lt/lte/gt/gte (including PGV's inverted ranges), in and not_in."""
    problems: list[str] = []
    key = to_key(value)
    if rules.HasField("const") and key != to_key(rules.const):
        problems.append(f"value must equal {_show(rules.const)}")

    lower = _bound(rules, ("gt", "gte"))
    upper = _bound(rules, ("lt", "lte"))
    above = lower is None or _satisfies(key, lower[0], to_key(lower[1]))
    below = upper is None or _satisfies(key, upper[0], to_key(upper[1]))
    if lower is not None and upper is not None and to_key(upper[1]) < to_key(lower[1]):
        # PGV reads lt < gt as an exclusive range: the value must lie outside it.
        if not (above or below):
            problems.append(f"value must be {_describe(lower)} or {_describe(upper)}")
    elif not (above and below):
        problems.append(
            "value must be " + " and ".join(_describe(b) for b in (lower, upper) if b is not None)
        )

    allowed = [to_key(item) for item in getattr(rules, "in")]
    if allowed and key not in allowed:
        problems.append(f"value must be one of {[_show(item) for item in getattr(rules, 'in')]}")
    if key in [to_key(item) for item in rules.not_in]:
        problems.append(f"value must not be {_show(value)}")
    return problems


def _bound(rules: Any, names: tuple[str, str]) -> tuple[str, Any] | None:
    for name in names:
        if rules.HasField(name):
            return name, getattr(rules, name)
    return None


def _satisfies(key: Any, operator: str, bound: Any) -> bool:
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return comparisons[operator](key, bound)


def _describe(bound: tuple[str, Any]) -> str:
    words = {"gt": "greater than", "gte": "at least", "lt": "less than", "lte": "at most"}
    return f"{words[bound[0]]} {_show(bound[1])}"


def _show(value: Any) -> str:
    if isinstance(value, message.Message) and value.DESCRIPTOR.full_name.startswith(
        "google.protobuf."
    ):
        return value.ToJsonString()
    return repr(value)


def _duration_key(value: Any) -> int:
    return int(value.seconds) * 1_000_000_000 + int(value.nanos)


def _check_duration(rules: Any, value: Any, field: FieldDescriptor) -> list[str]:
    return _check_ordered(rules, value, _duration_key)


def _check_timestamp(rules: Any, value: Any, field: FieldDescriptor) -> list[str]:
    return _check_ordered(rules, value, _duration_key)


def _check_bool(rules: Any, value: bool, field: FieldDescriptor) -> list[str]:
    if rules.HasField("const") and value != rules.const:
        return [f"value must equal {rules.const}"]
    return []


def _check_enum(rules: Any, value: int, field: FieldDescriptor) -> list[str]:
    problems: list[str] = []
    if rules.HasField("const") and value != rules.const:
        problems.append(f"value must equal {rules.const}")
    if rules.defined_only and value not in field.enum_type.values_by_number:
        problems.append(f"value {value} is not defined in enum {field.enum_type.full_name}")
    allowed = list(getattr(rules, "in"))
    if allowed and value not in allowed:
        problems.append(f"value must be one of {allowed}")
    if value in rules.not_in:
        problems.append(f"value must not be {value}")
    return problems


def _check_any(rules: Any, value: any_pb2.Any, field: FieldDescriptor) -> list[str]:
    allowed = list(getattr(rules, "in"))
    if allowed and value.type_url not in allowed:
        return [f"type URL must be one of {allowed}"]
    if value.type_url in rules.not_in:
        return [f"type URL {value.type_url} is not allowed here"]
    return []


def _check_repeated(rules: Any, value: Any, field: FieldDescriptor) -> list[str]:
    problems: list[str] = []
    count = len(value)
    if rules.ignore_empty and count == 0:
        return []
    if rules.HasField("min_items") and count < rules.min_items:
        problems.append(f"must contain at least {rules.min_items} item(s), found {count}")
    if rules.HasField("max_items") and count > rules.max_items:
        problems.append(f"must contain at most {rules.max_items} item(s), found {count}")
    if rules.unique:
        seen = [
            item.SerializeToString() if isinstance(item, message.Message) else item
            for item in value
        ]
        if len(set(seen)) != len(seen):
            problems.append("items must be unique")
    return problems


def _check_map(rules: Any, value: Any, field: FieldDescriptor) -> list[str]:
    problems: list[str] = []
    count = len(value)
    if rules.ignore_empty and count == 0:
        return []
    if rules.HasField("min_pairs") and count < rules.min_pairs:
        problems.append(f"must contain at least {rules.min_pairs} pair(s), found {count}")
    if rules.HasField("max_pairs") and count > rules.max_pairs:
        problems.append(f"must contain at most {rules.max_pairs} pair(s), found {count}")
    return problems


def _check_bytes(rules: Any, value: bytes, field: FieldDescriptor) -> list[str]:
    if rules.ignore_empty and not value:
        return []
    return _check_sequence(rules, value, len(value), len(value))


def _check_string(rules: Any, value: str, field: FieldDescriptor) -> list[str]:
    if rules.ignore_empty and not value:
        return []
    problems = _check_sequence(rules, value, len(value), len(value.encode()))
    if rules.HasField("len_bytes") and len(value.encode()) != rules.len_bytes:
        problems.append(f"value must be exactly {rules.len_bytes} bytes long")
    if rules.HasField("min_bytes") and len(value.encode()) < rules.min_bytes:
        problems.append(f"value must be at least {rules.min_bytes} bytes long")
    if rules.HasField("max_bytes") and len(value.encode()) > rules.max_bytes:
        problems.append(f"value must be at most {rules.max_bytes} bytes long")
    if rules.HasField("pattern") and re.search(rules.pattern, value) is None:
        problems.append(f"value does not match regex pattern {rules.pattern!r}")
    if rules.not_contains and rules.not_contains in value:
        problems.append(f"value must not contain {rules.not_contains!r}")
    well_known = rules.WhichOneof("well_known")
    if well_known is not None and not _matches_well_known(rules, well_known, value):
        problems.append(f"value must be a valid {_well_known_name(rules, well_known)}")
    return problems


def _check_sequence(rules: Any, value: Any, length: int, size: int) -> list[str]:
    """Apply the rules that strings and bytes share. String lengths count code points."""
    problems: list[str] = []
    if rules.HasField("const") and value != rules.const:
        problems.append(f"value must equal {rules.const!r}")
    if rules.HasField("len") and length != rules.len:
        problems.append(f"value length must be exactly {rules.len}")
    if rules.HasField("min_len") and length < rules.min_len:
        problems.append(f"value length must be at least {rules.min_len}")
    if rules.HasField("max_len") and length > rules.max_len:
        problems.append(f"value length must be at most {rules.max_len}")
    if rules.prefix and not value.startswith(rules.prefix):
        problems.append(f"value must start with {rules.prefix!r}")
    if rules.suffix and not value.endswith(rules.suffix):
        problems.append(f"value must end with {rules.suffix!r}")
    if rules.contains and rules.contains not in value:
        problems.append(f"value must contain {rules.contains!r}")
    allowed = list(getattr(rules, "in"))
    if allowed and value not in allowed:
        problems.append(f"value must be one of {allowed}")
    if value in rules.not_in:
        problems.append(f"value must not be {value!r}")
    return problems


def _matches_well_known(rules: Any, well_known: str, value: str) -> bool:
    if well_known == "well_known_regex":
        strict = rules.strict if rules.HasField("strict") else True
        if not strict:
            return HEADER_LOOSE.match(value) is not None
        if rules.well_known_regex == validate_pb2.HTTP_HEADER_NAME:
            return HEADER_NAME_STRICT.match(value) is not None
        if rules.well_known_regex == validate_pb2.HTTP_HEADER_VALUE:
            return HEADER_VALUE_STRICT.match(value) is not None
        return True
    if not getattr(rules, well_known):
        return True
    validators: dict[str, Callable[[str], bool]] = {
        "hostname": _is_hostname,
        "ip": lambda text: _is_ip(text, None),
        "ipv4": lambda text: _is_ip(text, 4),
        "ipv6": lambda text: _is_ip(text, 6),
        "address": lambda text: _is_ip(text, None) or _is_hostname(text),
        "uri": lambda text: bool(urllib.parse.urlsplit(text).scheme),
        "uuid": lambda text: UUID.match(text) is not None,
    }
    return validators[well_known](value)


def _well_known_name(rules: Any, well_known: str) -> str:
    if well_known == "well_known_regex":
        return validate_pb2.KnownRegex.Name(rules.well_known_regex)
    return well_known


def _is_hostname(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return len(text) <= 253 and all(HOSTNAME_LABEL.match(label) for label in labels)


def _is_ip(text: str, version: int | None) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _is_synthetic(oneof: descriptor.OneofDescriptor) -> bool:
    return len(oneof.fields) == 1 and oneof.fields[0].has_presence and oneof.name.startswith("_")


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


_CHECKERS: dict[str, Callable[[Any, Any, FieldDescriptor], list[str]]] = {
    "bool": _check_bool,
    "string": _check_string,
    "bytes": _check_bytes,
    "enum": _check_enum,
    "duration": _check_duration,
    "timestamp": _check_timestamp,
    "any": _check_any,
    "repeated": _check_repeated,
    "map": _check_map,
}
