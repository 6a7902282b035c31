"""Actor messages and replies as bytes, for asks and tells that cross nodes over Redis.

Every node runs the same code, so a message travels as its dataclass's qualified name plus
its field values (msgpack), and is rebuilt with the same class on the other side. Only
dataclasses defined in the engine's modules may be rebuilt: bytes from Redis never name an
arbitrary callable (unlike pickle). Datetimes keep their timezone, tuples stay tuples (frozen
messages hold them), and an EngineError travels as its code, message and details, so the
caller sees exactly the error the owning node's actor raised.
"""

from __future__ import annotations

import dataclasses
import importlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack

from engine.errors import DomainError, EngineError

_ALLOWED_PREFIX = "engine."  # only engine dataclasses travel
_DATACLASS, _DATETIME, _TUPLE, _ERROR = 1, 2, 3, 4
_classes: dict[str, type[Any]] = {}


def _name(cls: type[Any]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(name: str) -> type[Any]:
    cls = _classes.get(name)
    if cls is not None:
        return cls
    module, _, qualname = name.partition(":")
    if not module.startswith(_ALLOWED_PREFIX) or "." in qualname:
        raise ValueError(f"refusing to rebuild {name!r}")
    found = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(found, type) and dataclasses.is_dataclass(found)):
        raise ValueError(f"{name!r} is not an engine dataclass")
    _classes[name] = found
    return found


def _init_fields(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.init)


def _default(obj: Any) -> msgpack.ExtType:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        values = [getattr(obj, f.name) for f in _init_fields(type(obj))]
        return msgpack.ExtType(_DATACLASS, _pack([_name(type(obj)), values]))
    if isinstance(obj, datetime):
        offset = obj.utcoffset()
        seconds = None if offset is None else offset.total_seconds()
        return msgpack.ExtType(_DATETIME, _pack([obj.replace(tzinfo=None).isoformat(), seconds]))
    if isinstance(obj, EngineError):
        return msgpack.ExtType(_ERROR, _pack([obj.code, obj.message, obj.details, isinstance(obj, DomainError)]))
    raise TypeError(f"cannot send {type(obj).__name__} to another node")


def _ext(code: int, data: bytes) -> Any:
    value = _unpack(data)
    if code == _DATACLASS:
        name, values = value
        cls = _class(name)
        return cls(**dict(zip((f.name for f in _init_fields(cls)), values, strict=True)))
    if code == _DATETIME:
        naive, seconds = value
        tz = None if seconds is None else (UTC if seconds == 0 else timezone(timedelta(seconds=seconds)))
        return datetime.fromisoformat(naive).replace(tzinfo=tz)
    if code == _TUPLE:
        return tuple(value)
    if code == _ERROR:
        err_code, message, details, domain = value
        return (DomainError if domain else EngineError)(err_code, message, details)
    return msgpack.ExtType(code, data)


def _tuples(obj: Any) -> Any:
    """msgpack writes tuples as arrays; mark them so they come back as tuples."""
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return msgpack.ExtType(_TUPLE, _pack(list(obj)))
    if isinstance(obj, list):
        return [_tuples(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _tuples(v) for k, v in obj.items()}
    return obj


def _pack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(_tuples(obj), default=_default, use_bin_type=True, datetime=False)
    return packed


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext, raw=False, strict_map_key=False)


def dumps(obj: Any) -> bytes:
    """Encode a message, a reply or an EngineError for another node."""
    return _pack(obj)


def loads(data: bytes) -> Any:
    """Rebuild what `dumps` encoded (ValueError for a class outside the engine)."""
    return _unpack(data)
