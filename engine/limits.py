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

# ---------------------------------------------------------------- riders (location pings, issue 7)

RIDER_HEADING_MAX: Final = 360.0  # degrees clockwise from north, 0..360
RIDER_SPEED_MAX_KMH: Final = 250.0  # a device-reported speed above this is malformed
RIDER_ACCURACY_MAX_M: Final = 10_000.0  # a fix less precise than 10 km is useless for tracking
PING_FUTURE_SKEW: Final = timedelta(seconds=30)  # phone clocks run ahead; more than this is refused
PING_MAX_AGE: Final = timedelta(minutes=10)  # an older fix (a queue flushed after a tunnel) is refused
PING_MIN_INTERVAL_SECONDS: Final = 0.25  # a rider's pings handled at most this often; the newest waits
PLAUSIBLE_SPEED_KMH: Final = 150.0  # an implied speed above this between fixes is a jump: dropped
RIDER_MAX_OFFERS: Final = 8  # assignment offers a rider actor remembers at once

# ---------------------------------------------------------------- orders (issue 7)

DELIVERY_CODE_LENGTH: Final = 6  # digits of the code the customer gives the rider at the door
MAX_CODE_ATTEMPTS: Final = 5  # wrong delivery codes before the code locks (ops must step in)
REASON_MAX_LENGTH: Final = 280  # order:cancel / order:update CANCELED reason
ORDER_ETA_MINUTES_MIN: Final = 1  # the vendor's etaMinutes with PREPARING
ORDER_ETA_MINUTES_MAX: Final = 600
RATING_MIN: Final = 1
RATING_MAX: Final = 5
REVIEW_COMMENT_MAX_LENGTH: Final = 1000
ORDER_LIST_DEFAULT: Final = 20  # GET /api/v1/orders page size
ORDER_LIST_MAX: Final = 100

# ---------------------------------------------------------------- payments (issue 8)

WEBHOOK_BODY_MAX_BYTES: Final = 64 * 1024  # a provider's webhook body; larger is 413 unread
REFUND_REASON_MAX_LENGTH: Final = 280  # POST /admin/payments/{id}/refund reason
PAYMENT_INBOX_BATCH: Final = 100  # inbox events / INITIATED payments one reconcile round takes

# ---------------------------------------------------------------- outages and abuse (issue 14)

MAX_JSON_DEPTH: Final = 64  # nesting of an HTTP JSON body (sockets: orjson's own 1,024); no schema comes near it

# ---------------------------------------------------------------- analytics and AI (issue 11)

ANALYTICS_MAX_DAYS: Final = 366  # the longest analytics window, in local days
ANALYTICS_DEFAULT_DAYS: Final = 30  # the window without from/to
ANALYTICS_TOP_CATEGORIES: Final = 5  # categories listed in an overview
AUTOBID_MAX_RULES: Final = 20  # standing auto-bid rules per vendor (one per category)
AUTOBID_MAX_RADIUS_KM: Final = 50.0  # a rule's radius
AUTOBID_QUEUE_MAX: Final = 10_000  # new requests waiting for auto-bid; past it the newest are skipped
AI_ETA_TRACKED_MAX: Final = 50_000  # trips whose AI ETA a node keeps
