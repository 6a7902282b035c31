"""Personal data encrypted at rest: AES-256-GCM per column value, blind indexes for lookups.

A stored value is `pii1.<key id>.<base64url(nonce || ciphertext || tag)>`, sealed with the
current key and the column's name as associated data (a value moved to another column does
not open). The key id travels with every value, so old keys stay usable for reading while
`pocho-rt pii-rotate` re-seals rows under the current one. A value without the prefix is a
row written before encryption (migration 0005): it is read as it is, and found by phone
through the plaintext column until the rotation command seals it.

Equality lookups (login by phone, ops search by phone, email or full name) use a blind
index: HMAC-SHA256 of the normalised value under a separate key, so the database can match
without holding anything it could reverse. During an index-key change both the current and
the previous index key are tried (`digests`).

Keys come from the environment (docs/USERS.md "Encryption at rest"): `kid:base64url(32 bytes)`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "pii1."
_KID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_NONCE = 12
KEY_BYTES = 32

# Users' personal columns and the blind index each one feeds.
USER_PII_COLUMNS = ("phone", "first_name", "last_name", "email")
# Meal requests' personal columns and their names in a request view (engine.negotiation_views'
# request_view). The same sealed value goes into `meal_requests`, into the `request` object of
# stored event payloads and into stored command replies: the column name is its associated data
# wherever it is stored.
REQUEST_PII_FIELDS = (("address_line", "addressLine"), ("notes", "notes"))
# The phone an SMS went to (`notifications_outbox.recipient`, channel 'sms').
RECIPIENT = "recipient"


class PiiError(ValueError):
    """A key is malformed, or a stored value does not open with any known key."""


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PiiError("not base64url") from None


def parse_key(raw: str) -> tuple[str, bytes]:
    """`kid:base64url(32 bytes)` -> (kid, key)."""
    kid, sep, encoded = raw.strip().partition(":")
    if not sep or not _KID.match(kid):
        raise PiiError("a key is written kid:base64url, kid of 1-16 letters, digits, _ or -")
    key = _b64decode(encoded)
    if len(key) != KEY_BYTES:
        raise PiiError(f"a key must be {KEY_BYTES} bytes, base64url encoded")
    return kid, key


def parse_index_key(raw: str) -> bytes:
    key = _b64decode(raw.strip())
    if len(key) < KEY_BYTES:
        raise PiiError(f"an index key must be at least {KEY_BYTES} bytes, base64url encoded")
    return key


def new_key_text(kid: str) -> str:
    """A fresh key in the environment's format (for `pocho-rt pii-keygen`)."""
    return f"{kid}:{base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode().rstrip('=')}"


def normalise_email(email: str) -> str:
    return email.strip().lower()


def normalise_name(first: str, last: str) -> str:
    return " ".join(f"{first} {last}".lower().split())


@dataclass(frozen=True, slots=True)
class PiiCodec:
    current: str  # key id new values are sealed with
    keys: Mapping[str, bytes]  # every key id that may still be read
    index_keys: tuple[bytes, ...]  # current blind-index key first, then the previous one
    # One AES-GCM object per key, built once: building it costs as much as sealing a value.
    _ciphers: dict[str, AESGCM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ciphers", {kid: AESGCM(key) for kid, key in self.keys.items()})

    @classmethod
    def build(cls, key: str, old_keys: str = "", index_key: str = "", old_index_key: str = "") -> PiiCodec:
        kid, current = parse_key(key)
        keys = {kid: current}
        for raw in filter(None, (k.strip() for k in old_keys.split(","))):
            old_kid, old = parse_key(raw)
            if old_kid in keys and keys[old_kid] != old:
                raise PiiError(f"key id {old_kid!r} is given twice with different keys")
            keys[old_kid] = old
        index = [parse_index_key(index_key)]
        if old_index_key.strip():
            index.append(parse_index_key(old_index_key))
        return cls(kid, keys, tuple(index))

    # ---------------------------------------------------------------- values

    def seal(self, column: str, value: str | None) -> str | None:
        if value is None:
            return None
        nonce = os.urandom(_NONCE)
        sealed = self._ciphers[self.current].encrypt(nonce, value.encode(), column.encode())
        return f"{PREFIX}{self.current}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, column: str, stored: str | None) -> str | None:
        """The plaintext of a stored value (a value written before encryption as it is)."""
        if stored is None or not stored.startswith(PREFIX):
            return stored
        kid, _, body = stored[len(PREFIX) :].partition(".")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise PiiError(f"no key with id {kid!r} is configured (POCHO_PII_OLD_KEYS?)")
        raw = _b64decode(body)
        try:
            return cipher.decrypt(raw[:_NONCE], raw[_NONCE:], column.encode()).decode()
        except InvalidTag:
            raise PiiError(f"a {column} value does not open with key {kid!r}") from None

    @staticmethod
    def key_id(stored: str | None) -> str | None:
        """The key a stored value is sealed with; None for NULL or a value from before encryption."""
        if stored is None or not stored.startswith(PREFIX):
            return None
        return stored[len(PREFIX) :].partition(".")[0]

    # ---------------------------------------------------------------- blind indexes

    def _digest(self, key: bytes, label: str, value: str) -> str:
        return hmac.new(key, f"{label}:{value}".encode(), hashlib.sha256).hexdigest()

    def index(self, label: str, value: str | None) -> str | None:
        """The current key's blind index of a normalised value (what is stored)."""
        return None if value is None else self._digest(self.index_keys[0], label, value)

    def digests(self, label: str, value: str) -> list[str]:
        """The value's index under every configured index key (what lookups match)."""
        return [self._digest(k, label, value) for k in self.index_keys]

    # ---------------------------------------------------------------- users rows

    def user_values(self, *, phone: str, first_name: str, last_name: str, email: str | None) -> dict[str, Any]:
        """Columns to store for a user's personal data: sealed values and their indexes."""
        return {
            "phone": self.seal("phone", phone),
            "first_name": self.seal("first_name", first_name),
            "last_name": self.seal("last_name", last_name),
            "email": self.seal("email", email),
            "phone_index": self.index("phone", phone),
            "email_index": self.index("email", None if email is None else normalise_email(email)),
            "name_index": self.index("name", normalise_name(first_name, last_name)),
        }

    def open_user(self, row: Any) -> dict[str, Any] | None:
        """A users row with its personal columns opened (index columns dropped); None stays None."""
        if row is None:
            return None
        out = dict(row)
        for column in USER_PII_COLUMNS:
            if column in out:
                out[column] = self.open(column, out[column])
        for column in ("phone_index", "email_index", "name_index"):
            out.pop(column, None)
        return out

    # ---------------------------------------------------------------- meal requests

    def open_request(self, row: Any) -> dict[str, Any]:
        """A meal_requests row (Record or dict) with its address line and notes opened."""
        out = dict(row)
        for column, _ in REQUEST_PII_FIELDS:
            if column in out:
                out[column] = self.open(column, out[column])
        return out

    def open_view(self, holder: Any) -> Any:
        """A stored JSON object (an event payload, a command reply) with the address line and
        notes of its `request` view opened, in place; anything else is returned as it is."""
        view = holder.get("request") if isinstance(holder, dict) else None
        if isinstance(view, dict):
            for column, key in REQUEST_PII_FIELDS:
                if key in view:
                    view[key] = self.open(column, view[key])
        return holder
