"""The development SMS provider behind `engine.ports.SmsSender`.

`DevSmsSender` sends nothing: the notification dispatcher marks the outbox row it was handed
`sent` with outcome `recorded`, and that row (`notifications_outbox`, channel 'sms', the
phone sealed in `recipient`, the text in `body` for codes) is where developers and tests read
what would have gone out. Production refuses to start with it (pocho_rt.config.check_notify):
set TERMII_API_KEY and the dispatcher uses adapters.termii instead.
"""

from __future__ import annotations

import logging

log = logging.getLogger("pocho.sms.dev")

NAME = "recorded"  # the outcome the dispatcher stores for rows this sender took


class DevSmsSender:
    """Records nothing itself and never fails (implements engine.ports.SmsSender)."""

    async def send(self, phone: str, body: str, *, user_id: str | None, kind: str) -> None:
        log.debug("development SMS recorded", extra={"kind": kind})  # never the phone or the text
