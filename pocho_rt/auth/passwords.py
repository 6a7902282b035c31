"""Password hashing with argon2id (argon2-cffi defaults, RFC 9106 low-memory profile).

argon2 is slow on purpose (~0.1-0.7 s of CPU here): both calls run in a worker thread (the
hash releases the GIL), so a login never stalls every socket of the node while it hashes.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown phone as slow as a real one.
_DUMMY = _hasher.hash("pocho-dummy-password")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(_verify, stored_hash, password)
