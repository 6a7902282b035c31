"""`pocho-rt pii-rotate` beyond `users`: re-seal meal requests' address lines and notes (the row,
the `request` view of stored event payloads, stored replies holding that view), SMS
recipients and the new numbers of pending phone changes under the current key. Values from
before encryption are sealed, values under an old key re-sealed; tombstones of erased people
stay as they are.

Batches go by primary key, one transaction each. Updates are compare-and-set on the value read
(no row locks): the writer keeps committing negotiation writes meanwhile, and a value changed
since the read (an erasure) is left alone. Running it again finishes what a run left.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from persistence.pii import RECIPIENT, REQUEST_PII_FIELDS, PiiCodec
from persistence.user_data import TOMBSTONE

_ACTOR_PREFIX = "meal_request:"  # command_replies.actor_key of a request's actor

_REQUESTS = """SELECT id, address_line, notes FROM meal_requests
                WHERE ($1::uuid IS NULL OR id > $1::uuid) ORDER BY id LIMIT $2"""
_RESEAL_REQUEST = """UPDATE meal_requests SET address_line = $2, notes = $3
                      WHERE id = $1 AND address_line = $4 AND notes IS NOT DISTINCT FROM $5"""
_EVENTS = """SELECT request_id, seq, payload #>> '{request,addressLine}' AS address_line,
                    payload #>> '{request,notes}' AS notes
               FROM negotiation_events
              WHERE request_id = ANY($1::uuid[]) AND jsonb_typeof(payload -> 'request') = 'object'"""
_REPLIES = """SELECT actor_key, user_id, client_msg_id, reply #>> '{request,addressLine}' AS address_line,
                     reply #>> '{request,notes}' AS notes
                FROM command_replies
               WHERE actor_key = ANY($1::text[]) AND jsonb_typeof(reply -> 'request') = 'object'"""
# $2, $3 the new address line and notes; $4, $5 the ones read.
_SET_VIEW = """{col} = jsonb_set(jsonb_set({col}, '{{request,addressLine}}', to_jsonb($2::text)),
                                 '{{request,notes}}', coalesce(to_jsonb($3::text), 'null'::jsonb))"""
_SAME_VIEW = """{col} #>> '{{request,addressLine}}' IS NOT DISTINCT FROM $4
            AND {col} #>> '{{request,notes}}' IS NOT DISTINCT FROM $5"""
_RESEAL_EVENT = f"""UPDATE negotiation_events SET {_SET_VIEW.format(col="payload")}
                     WHERE (request_id, seq) = ($1::uuid, $6::integer) AND {_SAME_VIEW.format(col="payload")}"""
_RESEAL_REPLY = f"""UPDATE command_replies SET {_SET_VIEW.format(col="reply")}
                     WHERE (actor_key, user_id, client_msg_id) = ($1::text, $6::uuid, $7::text)
                       AND {_SAME_VIEW.format(col="reply")}"""

# An SMS naming `user:<id>` (notifications, issue 10: the phone is read at delivery) holds no phone.
_TEXTS = """SELECT id, recipient FROM notifications_outbox
             WHERE id > $1 AND channel = 'sms' AND NOT starts_with(recipient, 'user:') ORDER BY id LIMIT $2"""
_RESEAL_TEXT = "UPDATE notifications_outbox SET recipient = $2 WHERE id = $1 AND recipient = $3"
# Codes live minutes: only pending ones matter, and there are few.
_CODES = """SELECT id, target FROM account_codes
             WHERE target IS NOT NULL AND consumed_at IS NULL AND expires_at > now()"""
_RESEAL_CODE = "UPDATE account_codes SET target = $2 WHERE id = $1 AND target = $3"


def _stale(pii: PiiCodec, value: str | None) -> bool:
    return value is not None and value != TOMBSTONE and pii.key_id(value) != pii.current


def _resealed(pii: PiiCodec, row: Any) -> tuple[str | None, str | None] | None:
    """The row's (address line, notes) as they should be stored; None when they already are."""
    if not any(_stale(pii, row[column]) for column, _ in REQUEST_PII_FIELDS):
        return None
    address, notes = (
        pii.seal(column, pii.open(column, row[column])) if _stale(pii, row[column]) else row[column]
        for column, _ in REQUEST_PII_FIELDS
    )
    return address, notes


def _updated(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def _requests_batch(
    conn: asyncpg.Connection, pii: PiiCodec, after: uuid.UUID | None, batch: int
) -> tuple[int, int, uuid.UUID | None]:
    """One batch of requests with their events and replies: (requests seen, values re-sealed, last id)."""
    rows = await conn.fetch(_REQUESTS, after, batch)
    if not rows:
        return 0, 0, None
    ids = [r["id"] for r in rows]
    changed = 0
    for r in rows:
        new = _resealed(pii, r)
        if new is not None:
            changed += _updated(await conn.execute(_RESEAL_REQUEST, r["id"], *new, r["address_line"], r["notes"]))
    for e in await conn.fetch(_EVENTS, ids):
        new = _resealed(pii, e)
        if new is not None:
            old = e["address_line"], e["notes"]
            changed += _updated(await conn.execute(_RESEAL_EVENT, e["request_id"], *new, *old, e["seq"]))
    for p in await conn.fetch(_REPLIES, [f"{_ACTOR_PREFIX}{i}" for i in ids]):
        new = _resealed(pii, p)
        if new is not None:
            old = p["address_line"], p["notes"]
            key = p["actor_key"], p["user_id"], p["client_msg_id"]
            changed += _updated(await conn.execute(_RESEAL_REPLY, key[0], *new, *old, key[1], key[2]))
    return len(rows), changed, (ids[-1] if len(rows) == batch else None)


async def rotate_requests(pool: asyncpg.Pool, pii: PiiCodec, batch: int = 500) -> tuple[int, int]:
    """Re-seal every meal request's address line and notes where stored. Returns (requests
    seen, stored values re-sealed: rows, event payloads and replies)."""
    seen = changed = 0
    after: uuid.UUID | None = None
    while True:
        async with pool.acquire() as conn, conn.transaction():
            n, c, after = await _requests_batch(conn, pii, after, batch)
        seen, changed = seen + n, changed + c
        if after is None:
            return seen, changed


async def rotate_texts(pool: asyncpg.Pool, pii: PiiCodec, batch: int = 500) -> tuple[int, int]:
    """Re-seal the recipient phone of every stored SMS. Returns (texts seen, re-sealed)."""
    seen = changed = 0
    after = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_TEXTS, after, batch)
            for r in rows:
                if _stale(pii, r[RECIPIENT]):
                    new = pii.seal(RECIPIENT, pii.open(RECIPIENT, r[RECIPIENT]))
                    changed += _updated(await conn.execute(_RESEAL_TEXT, r["id"], new, r[RECIPIENT]))
        seen += len(rows)
        if len(rows) < batch:
            return seen, changed
        after = rows[-1]["id"]


async def rotate_codes(pool: asyncpg.Pool, pii: PiiCodec) -> int:
    """Re-seal the target number of pending phone-change codes. Returns how many changed."""
    changed = 0
    async with pool.acquire() as conn, conn.transaction():
        for r in await conn.fetch(_CODES):
            if _stale(pii, r["target"]):
                new = pii.seal("target", pii.open("target", r["target"]))
                changed += _updated(await conn.execute(_RESEAL_CODE, r["id"], new, r["target"]))
    return changed
