"""Every bound a client can run into, in one place.

The socket schemas (pocho_rt/sockets/schemas.py) declare these as msgspec bounds so a
bad payload is refused `invalid` before it reaches an actor; the negotiation rules
(engine/negotiation.py) check the same names again for callers that skip the schemas.
Change a bound here and both follow; PROTOCOL.md and README "Limits" quote them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

# ---------------------------------------------------------------- money (integer kobo)

MAX_BUDGET_KOBO: Final = 50_000_000  # NGN 500,000: the largest budget a customer may post
MAX_PRICE_KOBO: Final = MAX_BUDGET_KOBO * 2  # an offer may be over budget, not without bound

# ---------------------------------------------------------------- text lengths (characters)

ID_MAX_LENGTH: Final = 64  # request, offer and clientMsgId strings
CATEGORY_MAX_LENGTH: Final = 64
ADDRESS_MAX_LENGTH: Final = 256
NOTES_MAX_LENGTH: Final = 1000  # request notes
DETAILS_MAX_LENGTH: Final = 500  # offer details
MESSAGE_MAX_LENGTH: Final = 500  # the customer's note with a counter

# ---------------------------------------------------------------- request:create options

EXPIRES_IN_MINUTES_MIN: Final = 1
EXPIRES_IN_MINUTES_MAX: Final = 120
EXPIRES_IN_MINUTES_DEFAULT: Final = 15
MAX_VENDOR_OFFERS_MIN: Final = 1  # live offers a request takes at once (the customer's choice)
MAX_VENDOR_OFFERS_MAX: Final = 20
MAX_VENDOR_OFFERS_DEFAULT: Final = 10
DESIRED_AT_GRACE: Final = timedelta(minutes=5)  # phone clocks drift; a slightly past desiredAt is fine

# ---------------------------------------------------------------- offers

PREP_MINUTES_MIN: Final = 1
PREP_MINUTES_MAX: Final = 600
MAX_COUNTER_ROUNDS: Final = 3  # customer counters per offer
MAX_OFFERS_PER_REQUEST: Final = 60  # live or not: bounds place/withdraw churn on one request

# ---------------------------------------------------------------- per actor, customer and socket

REMEMBERED_REPLIES: Final = 32  # clientMsgId answers a meal-request actor keeps for retries
MAX_OPEN_REQUESTS: Final = 10  # open meal requests per customer
MAX_WATCHED_PER_SOCKET: Final = 50  # requests one vendor socket watches at once
MAX_REPLAY_EVENTS: Final = 1000  # events one request:watch replays; older ones need a fresh snapshot
