"""Decode untrusted payloads into typed msgspec structs, or fail with field details."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from engine.limits import MAX_JSON_DEPTH
from pocho_rt.errors import ApiError

T = TypeVar("T")
# `\u0000` as a JSON escape (its backslash not itself escaped): PostgreSQL text cannot hold NUL.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")
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


def _depth(raw: bytes) -> int:
    """Deepest nesting of arrays/objects in JSON text (strings skipped)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub(b"", raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def decode_json(raw: bytes, typ: type[T]) -> T:
    """Validate a raw JSON body (an HTTP request) against a schema.

    The one parser for untrusted JSON text: besides the schema it refuses text that is not
    UTF-8, lone surrogate escapes, NUL characters and nesting deeper than MAX_JSON_DEPTH, all
    as `invalid` (never a 500 from deep in the stack or from PostgreSQL)."""
    if _NUL_ESCAPE.search(raw):
        raise ApiError("invalid", "invalid body: text may not contain NUL characters", {"body": "NUL character"})
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth(raw) > MAX_JSON_DEPTH:
        raise ApiError("invalid", f"invalid body: nested deeper than {MAX_JSON_DEPTH}", {"body": "nested too deeply"})
    try:
        return msgspec.json.decode(raw, type=typ, strict=True)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _error(exc) from None
    except (UnicodeDecodeError, RecursionError):
        raise ApiError("invalid", "invalid body: not UTF-8 JSON", {"body": "malformed"}) from None
