"""SMS providers behind `engine.ports.SmsSender`.

`DevSmsSender` is the development provider: it sends nothing and records each message in
`notifications_outbox` (channel 'sms', status 'sent'), where developers and tests read it.
A real provider would insert the row as 'pending' and let the outbox worker deliver it.
The recipient phone is stored sealed (persistence.pii, column `recipient`), like users' phones.
"""

from __future__ import annotations

import asyncpg

from persistence.pii import RECIPIENT, PiiCodec


class DevSmsSender:
    """Records messages instead of sending them (implements engine.ports.SmsSender)."""

    def __init__(self, pool: asyncpg.Pool, pii: PiiCodec) -> None:
        self._pool = pool
        self._pii = pii

    async def send(self, phone: str, body: str, *, user_id: str | None, kind: str) -> None:
        await self._pool.execute(
            """INSERT INTO notifications_outbox (user_id, channel, kind, recipient, body, status, sent_at)
               VALUES ($1::uuid, 'sms', $2, $3, $4, 'sent', now())""",
            user_id,
            kind,
            self._pii.seal(RECIPIENT, phone),
            body,
        )
