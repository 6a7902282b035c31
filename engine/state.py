"""Copying the engine's frozen state classes: every rule returns a changed copy, never a mutation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


@functools.cache
def _copier(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    """A copy function written for `cls`: one slot set per field, no loop over the fields
    (about twice as fast as a loop for the request's 20 fields)."""
    names: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_fields": frozenset(names)}
    lines = [
        "def copy(obj, changes):",
        "    if not changes.keys() <= _fields:",
        "        raise KeyError(f'{_cls.__name__} has no field {sorted(changes.keys() - _fields)}')",
        "    new = _new(_cls)",
    ]
    for i, name in enumerate(names):
        env[f"_set{i}"] = getattr(cls, name).__set__
        lines.append(f"    _set{i}(new, changes[{name!r}] if {name!r} in changes else obj.{name})")
    lines.append("    return new")
    exec("\n".join(lines), env)
    fn: Callable[[Any, dict[str, Any]], Any] = env["copy"]
    return fn


def evolve(obj: _T, **changes: Any) -> _T:
    """`dataclasses.replace` for the frozen, slotted state classes, several times faster: it
    skips the generated `__init__` (a frozen one sets each field through
    `object.__setattr__`) and sets the slots directly. The rules copy on every command."""
    cls: type = type(obj)
    new: _T = _copier(cls)(obj, changes)
    return new
