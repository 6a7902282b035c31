"""Prometheus metrics of the server process; every name starts with `pocho_`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from engine.runtime.metrics import REGISTRY

HTTP_REQUESTS = Counter(
    "pocho_http_requests_total",
    "HTTP requests by route and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "pocho_http_request_seconds",
    "HTTP handling time by route",
    ["route"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
SOCKET_CONNECTIONS = Gauge(
    "pocho_socket_connections", "Open Socket.IO connections by namespace", ["namespace"], registry=REGISTRY
)
SOCKET_CONNECTS = Counter(
    "pocho_socket_connects_total",
    "Socket.IO connection attempts by namespace and outcome",
    ["namespace", "outcome"],
    registry=REGISTRY,
)
SOCKET_COMMANDS = Counter(
    "pocho_socket_commands_total",
    "Socket.IO commands by namespace, event and outcome code",
    ["namespace", "event", "code"],
    registry=REGISTRY,
)
DB_POOL_SIZE = Gauge("pocho_db_pool_size", "Connections open in the asyncpg pool", registry=REGISTRY)
DB_POOL_IDLE = Gauge("pocho_db_pool_idle", "Idle connections in the asyncpg pool", registry=REGISTRY)
DB_POOL_MAX = Gauge("pocho_db_pool_max", "Maximum size of the asyncpg pool", registry=REGISTRY)
RATE_LIMITED = Counter("pocho_rate_limited_total", "Requests refused by a rate limit", ["limit"], registry=REGISTRY)

# payments (issue 8)
PAYMENT_WEBHOOKS = Counter(
    "pocho_payment_webhooks_total",
    "Webhook deliveries by provider and outcome (recorded, duplicate, bad_signature, too_large, invalid, unavailable)",
    ["provider", "outcome"],
    registry=REGISTRY,
)
PAYMENT_TRANSITIONS = Counter(
    "pocho_payment_transitions_total", "Payment status changes by the status reached", ["status"], registry=REGISTRY
)
PAYMENT_REVIEWS = Counter(
    "pocho_payment_reviews_total", "Payments sent to ops for review, by reason", ["reason"], registry=REGISTRY
)
PAYMENT_INBOX = Gauge(
    "pocho_payment_inbox", "Webhook deliveries recorded but not yet applied (reconcile retries them)", registry=REGISTRY
)
PAYMENT_RECONCILED = Counter(
    "pocho_payment_reconciled_total",
    "Reconcile job actions (inbox_retried, reverified, reconfirmed, refund_retried)",
    ["action"],
    registry=REGISTRY,
)

# users (issue 15)
REFRESH_REPLAYS = Counter(
    "pocho_refresh_replays_total",
    "Refresh tokens presented again within the grace and answered with the same successor pair",
    registry=REGISTRY,
)
ACCOUNT_EVENTS = Counter(
    "pocho_account_events_total",
    "Account changes: password_changed, password_reset, phone_changed, disabled, enabled, erased, "
    "session_ended, export",
    ["event"],
    registry=REGISTRY,
)

# outages and abuse (issue 14)
HTTP_GUARD = Counter(
    "pocho_http_guard_total",
    "HTTP connections closed or refused by the connection guard, by reason",
    ["reason"],
    registry=REGISTRY,
)
SOCKET_FLOW = Counter(
    "pocho_socket_flow_total",
    "Socket.IO frames refused by the per-socket flow control (rate, backlog) or unreadable (invalid)",
    ["reason"],
    registry=REGISTRY,
)
STORAGE_UNAVAILABLE = Counter(
    "pocho_storage_unavailable_total",
    "Requests and commands answered `unavailable` because PostgreSQL or Redis failed or missed its deadline",
    ["transport"],
    registry=REGISTRY,
)
