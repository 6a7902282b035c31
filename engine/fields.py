"""Field checks the domain rules share: each returns the client's error text for one field, or
None, and `invalid` raises them together, so a command with several bad fields is answered once
with all of them (PROTOCOL: `invalid` with `details` per field)."""

from __future__ import annotations

from engine.errors import DomainError


def int_error(v: object, lo: int, hi: int) -> str | None:
    if not isinstance(v, int) or isinstance(v, bool):  # bool is an int to Python, not to us
        return "must be an integer"
    return None if lo <= v <= hi else f"must be between {lo} and {hi}"


def text_error(v: object, hi: int, *, required: bool) -> str | None:
    """`required`: present and not blank; otherwise None (absent) passes."""
    if v is None:
        return "required" if required else None
    if not isinstance(v, str):
        return "must be a string"
    if required and not v.strip():
        return "must not be empty"
    if "\x00" in v:  # PostgreSQL text cannot hold NUL
        return "must not contain NUL characters"
    return None if len(v) <= hi else f"must be at most {hi} characters"


def invalid(errors: dict[str, str | None]) -> None:
    bad = {k: v for k, v in errors.items() if v is not None}
    if bad:
        raise DomainError("invalid", "invalid payload: " + ", ".join(bad), bad)
