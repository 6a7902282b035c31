"""The one parser for untrusted JSON bodies (pocho_rt.validation.decode_json): what it refuses
as `invalid` before a schema, a handler or PostgreSQL could fail on it with a 500."""

from __future__ import annotations

import pytest

from engine.errors import EngineError
from engine.limits import MAX_JSON_DEPTH
from pocho_rt.validation import Schema, decode_json


class Body(Schema, frozen=True):
    name: str = ""


def nested(depth: int) -> bytes:
    return b'{"name": "x", "extra": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def refused(raw: bytes) -> dict[str, str]:
    with pytest.raises(EngineError) as err:
        decode_json(raw, Body)
    assert err.value.code == "invalid"
    return dict(err.value.details or {})


def test_nesting_up_to_the_bound_is_read_and_past_it_refused() -> None:
    assert decode_json(nested(MAX_JSON_DEPTH), Body).name == "x"
    assert refused(nested(MAX_JSON_DEPTH + 1)) == {"body": "nested too deeply"}
    assert refused(nested(5000)) == {"body": "nested too deeply"}


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = "[" * 500 + '\\"{' * 100
    assert decode_json(('{"name": "' + text + '"}').encode(), Body).name == text.replace('\\"', '"')


@pytest.mark.parametrize(
    "raw",
    [b'{"name": "a\\u0000b"}', b'{"name": "\\\\\\u0000"}', b'{"other": "\\u0000"}', b'{"name": "a\x00"}'],
)
def test_nul_characters_are_refused(raw: bytes) -> None:
    assert refused(raw)


def test_an_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    assert decode_json(b'{"name": "\\\\u0000"}', Body).name == "\\u0000"


@pytest.mark.parametrize(
    "raw", [b'{"name": "\\ud800"}', b'{"name": "\\udc00x"}', b'{"name": "\xff\xfe"}', b"\xed\xa0\x80"]
)
def test_lone_surrogates_and_bytes_that_are_not_utf8_are_refused(raw: bytes) -> None:
    assert refused(raw)


def test_a_surrogate_pair_is_fine() -> None:
    assert decode_json(b'{"name": "\\ud83d\\ude00"}', Body).name == "\U0001f600"
