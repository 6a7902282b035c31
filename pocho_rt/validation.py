"""Decode untrusted payloads into typed msgspec structs, or fail with field details."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from pocho_rt.errors import ApiError

T = TypeVar("T")
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")


class Schema(msgspec.Struct, rename="camel", forbid_unknown_fields=False, frozen=True):
    """Base of every inbound payload: camelCase on the wire, snake_case in Python."""


def _error(exc: msgspec.ValidationError | msgspec.DecodeError) -> ApiError:
    text = str(exc)
    m = _PATH.search(text)
    reason = _PATH.sub("", text)
    missing = _MISSING.search(reason)
    prefix = m.group(1) + "." if m and m.group(1) else ""
    if missing:
        field, reason = prefix + missing.group(1), "required"
    else:
        field = m.group(1) if m and m.group(1) else "body"
    return ApiError("invalid", f"invalid {field}: {reason}", {field: reason})


def convert(data: Any, typ: type[T]) -> T:
    """Validate an already-parsed object (a socket payload) against a schema."""
    if not isinstance(data, dict):
        raise ApiError("invalid", "payload must be an object", {"body": "expected an object"})
    try:
        return msgspec.convert(data, typ, strict=True)
    except msgspec.ValidationError as exc:
        raise _error(exc) from None


def decode_json(raw: bytes, typ: type[T]) -> T:
    """Validate a raw JSON body (an HTTP request) against a schema."""
    try:
        return msgspec.json.decode(raw, type=typ, strict=True)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _error(exc) from None
