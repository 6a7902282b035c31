"""One typed settings object, read from the environment once and validated at start.

A bad value stops the process with a message naming the variable, so a typo in a
deployment fails loudly instead of running with a surprising default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from adapters.fcm import ServiceAccount
from persistence.pii import PiiError, parse_index_key, parse_key

DEV_JWT_SECRET = "dev-insecure-jwt-secret-change-me"
DEV_ADMIN_KEY = "dev-admin-key"
# users (issue 15): development keys for personal data at rest (production refuses them)
DEV_PII_KEY = "dev:ZGV2LW9ubHktcGlpLWtleS0zMi1ieXRlcy1sb25nLi4"
DEV_PII_INDEX_KEY = "ZGV2LW9ubHktYmxpbmQtaW5kZXgta2V5LTMyLWJ5dGVzLg"
_DEFAULT_SECRETS = {DEV_JWT_SECRET, DEV_ADMIN_KEY, DEV_PII_KEY, DEV_PII_INDEX_KEY, "", "changeme", "secret"}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _int(name: str, raw: str, lo: int, hi: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(name: str, raw: str, lo: float, hi: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _gc_threshold(name: str, raw: str) -> tuple[int, int, int]:
    parts = raw.split(",")
    if len(parts) != 3:
        raise ConfigError(f"{name} must be three integers like 50000,20,100, got {raw!r}")
    a, b, c = (_int(name, p.strip(), 0, 10_000_000) for p in parts)
    return a, b, c


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the server. Field docs live in the README's configuration table."""

    port: int = 8080
    host: str = "0.0.0.0"
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".pocho")
    node_id: str = ""
    workers: int = 1
    # cluster (issue 9): see docs/CLUSTER.md
    advertise_address: str = ""  # how ops reach this node (default host:port)
    cluster_shards: int = 256  # fixed for the life of a deployment: every node must agree
    cluster_node_lease_ms: int = 6000
    cluster_shard_lease_ms: int = 6000
    cluster_margin_ms: int = 1500  # stop serving a shard this long before its lease could pass on
    cluster_handoffs_per_round: int = 64
    env: str = "development"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_access_ttl: int = 900
    jwt_refresh_ttl: int = 30 * 24 * 3600
    admin_key: str = DEV_ADMIN_KEY
    rate_limit_enabled: bool = True
    paystack_secret_key: str = ""
    flutterwave_secret_hash: str = ""
    meilisearch_url: str | None = None
    meilisearch_api_key: str = ""
    log_level: str = "INFO"
    # Limits a client can otherwise grow.
    max_socket_message_bytes: int = 64 * 1024
    max_http_body_bytes: int = 1024 * 1024
    socket_connect_timeout: float = 10.0
    ping_interval: float = 25.0  # seconds; sub-second values are advertised as such (issue 13)
    ping_timeout: float = 20.0
    session_expiry_grace: float = 5.0
    # Engine timing.
    actor_idle_seconds: float = 300.0
    actor_mailbox_size: int = 1024
    ask_timeout_seconds: float = 5.0
    writer_flush_ms: float = 0.0
    writer_batch_rows: int = 2000
    writer_queue_max: int = 50_000
    writer_connections: int = 4  # group commits in flight at once (each on its own connection)
    writer_bulk: bool = True  # many rows of one insert in a group: one unnest statement
    writer_bulk_json: bool = True  # ... its rows as one JSON document (less client CPU than arrays)
    writer_slow_ms: float = 20.0  # a group in flight this long lets the next one start beside it
    expiry_scale: float = 1.0
    sweep_seconds: float = 2.0
    db_pool_size: int = 10
    # orders (issue 7)
    order_unpaid_cancel_seconds: float = 900.0  # PENDING_PAYMENT longer than this: CANCELED
    order_sla_scale: float = 1.0  # multiplies every SLA timer (tests and demos only)
    sla_prep_start_minutes: float = 10.0  # CONFIRMED and not PREPARING after this: SLA event
    sla_ready_grace_minutes: float = 10.0  # PREPARING past the promised prep time plus this
    sla_unassigned_minutes: float = 10.0  # no rider assigned this long after CONFIRMED
    sla_delivery_margin_minutes: float = 15.0  # delivery past its ETA by this margin
    assignment_offer_seconds: float = 30.0  # how long a rider has to accept `assignment:offer`
    # riders (issue 7)
    rider_heartbeat_seconds: float = 60.0  # no ping for this long: the rider is offline
    rider_location_flush_ms: float = 1000.0  # rider_locations COPY interval (crash may lose one)
    # CPython collector thresholds for `serve` (docs/BENCHMARKS.md "Rider pings": the default
    # 700,10,10 stalls a process holding ~10,000 sockets for 0.8-1.8 s per full collection)
    gc_threshold: tuple[int, int, int] = (50_000, 20, 100)
    # analytics and AI (issue 11)
    analytics_refresh_seconds: float = 5.0  # rollups lag the events by at most this
    feature_auto_bid: bool = False
    auto_bid_url: str | None = None
    auto_bid_key: str = ""
    feature_ai_recommendations: bool = False
    ai_recommendations_url: str | None = None
    ai_recommendations_key: str = ""
    feature_ai_eta: bool = False
    ai_eta_url: str | None = None
    ai_eta_key: str = ""
    ai_timeout_ms: float = 300.0  # the most any ML call may take, connect to last byte
    ai_breaker_failures: int = 5  # failures in a row that open a service's breaker
    ai_breaker_reset_seconds: float = 30.0  # an open breaker lets one trial call through after this
    ai_eta_refresh_ms: float = 2000.0  # AI ETAs of the trips in progress are fetched this often
    ai_eta_fresh_seconds: float = 30.0  # an AI ETA older than this is not used (SpeedEta instead)
    # payments (issue 8): settings go below this line
    paystack_base_url: str = "https://api.paystack.co"
    flutterwave_secret_key: str = ""
    flutterwave_base_url: str = "https://api.flutterwave.com"
    flutterwave_signature_v4: bool = False  # also accept the v4 `flutterwave-signature` HMAC
    platform_commission_bps: int = 1000  # the platform's share of a split payment (basis points)
    payment_provider_timeout: float = 10.0  # seconds per provider API call
    payment_reconcile_seconds: float = 60.0  # the reconcile job's interval
    payment_reverify_after_seconds: float = 300.0  # INITIATED this long: ask the provider
    payment_inbox_max_age_seconds: float = 86400.0  # unmatched webhooks retried this long
    payment_redirect_url: str = ""  # where the provider sends the customer after paying
    payment_email_domain: str = "customers.pocho.ng"  # for customers without an email

    # users (issue 15): settings go below this line
    refresh_grace_seconds: float = 30.0  # a rotated refresh token retried this soon gets the same pair
    pii_key: str = DEV_PII_KEY  # kid:base64url(32 bytes): seals personal columns (AES-256-GCM)
    pii_old_keys: str = ""  # comma-separated kid:key still read during a rotation
    pii_index_key: str = DEV_PII_INDEX_KEY  # base64url, >= 32 bytes: blind indexes (HMAC-SHA256)
    pii_old_index_key: str = ""  # the previous index key, matched until `pocho-rt pii-rotate` ran

    # outages and abuse (issue 14): settings go below this line
    db_acquire_timeout: float = 1.5  # waiting for (or opening) a pooled PostgreSQL connection
    db_query_timeout: float = 2.0  # one PostgreSQL statement, COMMIT included
    redis_timeout: float = 1.0  # one Redis command (and connecting), per attempt
    redis_health_check_seconds: int = 5  # an idle Redis connection is pinged before reuse after this
    socket_command_rate: float = 20.0  # commands per second per socket (token bucket refill)
    socket_command_burst: int = 60  # token bucket size
    socket_backlog: int = 64  # commands waiting per socket before `rate_limited`
    socket_msgpack: bool = True  # accept socket.io-msgpack-parser clients (chosen per connection)
    http_header_timeout: float = 10.0  # a request's headers must be complete within this
    http_body_timeout: float = 30.0  # a request's body must be complete within this after its headers
    http_max_connections_per_ip: int = 256  # concurrent HTTP/websocket connections per peer IP (0: no cap)
    http_keepalive_timeout: float = 75.0  # an idle keep-alive connection is closed after this

    # notifications (issue 10): settings go below this line
    notify_dispatch: bool = True  # run this node's dispatcher (any number of nodes may)
    fcm_service_account_json: str = ""  # the service-account key (JSON text, or a path to it); empty: no push
    fcm_base_url: str = "https://fcm.googleapis.com"
    termii_api_key: str = ""  # empty: SMS go to the development recorder (refused in production)
    termii_sender_id: str = "Pocho"
    termii_base_url: str = "https://api.ng.termii.com"
    termii_channel: str = "dnd"  # Termii route: dnd (transactional) or generic
    notify_provider_timeout: float = 5.0  # seconds per FCM/Termii call, connect to last byte
    notify_batch_size: int = 20  # outbox rows one dispatcher claims at a time
    notify_concurrency: int = 16  # provider calls in flight per node
    notify_poll_seconds: float = 1.0  # idle dispatcher looks for due rows this often
    notify_lease_seconds: float = 120.0  # a claimed row is retried by any node after this (> a batch's worst time)
    notify_max_attempts: int = 8  # retryable failures before a row is dead
    notify_backoff_base: float = 2.0  # seconds; doubled per attempt, +-25% jitter
    notify_backoff_cap: float = 900.0  # the longest wait between attempts
    notify_push_cap: int = 3  # pushes per user per window; more wait and collapse into one
    notify_push_window_seconds: float = 60.0
    notify_max_devices: int = 5  # device tokens per user (PUT /api/v1/me/devices)

    @property
    def production(self) -> bool:
        return self.env == "production"

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _pii(name: str, raw: str, check: Any) -> str:
    """users (issue 15): a personal-data key, checked by its parser (persistence.pii)."""
    try:
        check(raw.strip())
    except PiiError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return raw.strip()


def _level(name: str, raw: str) -> str:
    up = raw.strip().upper()
    if up not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"{name} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return up


def _env_name(name: str, raw: str) -> str:
    if raw not in {"development", "production"}:
        raise ConfigError(f"{name} must be development or production, got {raw!r}")
    return raw


# env var -> (field, parser)
_ENV: dict[str, tuple[str, Any]] = {
    "PORT": ("port", lambda n, r: _int(n, r, 0, 65535)),
    "HOST": ("host", lambda n, r: r),
    "DATABASE_URL": ("database_url", lambda n, r: r or None),
    "REDIS_URL": ("redis_url", lambda n, r: r or None),
    "POCHO_DATA_DIR": ("data_dir", lambda n, r: Path(r)),
    "POCHO_NODE_ID": ("node_id", lambda n, r: r),
    "WORKERS": ("workers", lambda n, r: _int(n, r, 1, 256)),
    "POCHO_ADVERTISE_ADDRESS": ("advertise_address", lambda n, r: r),
    "POCHO_CLUSTER_SHARDS": ("cluster_shards", lambda n, r: _int(n, r, 1, 65536)),
    "POCHO_CLUSTER_NODE_LEASE_MS": ("cluster_node_lease_ms", lambda n, r: _int(n, r, 300, 600_000)),
    "POCHO_CLUSTER_SHARD_LEASE_MS": ("cluster_shard_lease_ms", lambda n, r: _int(n, r, 300, 600_000)),
    "POCHO_CLUSTER_MARGIN_MS": ("cluster_margin_ms", lambda n, r: _int(n, r, 50, 300_000)),
    "POCHO_CLUSTER_HANDOFFS_PER_ROUND": ("cluster_handoffs_per_round", lambda n, r: _int(n, r, 1, 65536)),
    "POCHO_ENV": ("env", _env_name),
    "JWT_SECRET": ("jwt_secret", lambda n, r: r),
    "JWT_ACCESS_TTL": ("jwt_access_ttl", lambda n, r: _int(n, r, 10, 7 * 24 * 3600)),
    "JWT_REFRESH_TTL": ("jwt_refresh_ttl", lambda n, r: _int(n, r, 60, 365 * 24 * 3600)),
    "POCHO_ADMIN_KEY": ("admin_key", lambda n, r: r),
    "RATE_LIMIT_ENABLED": ("rate_limit_enabled", _bool),
    "PAYSTACK_SECRET_KEY": ("paystack_secret_key", lambda n, r: r),
    "FLUTTERWAVE_SECRET_HASH": ("flutterwave_secret_hash", lambda n, r: r),
    "MEILISEARCH_URL": ("meilisearch_url", lambda n, r: r or None),
    "MEILISEARCH_API_KEY": ("meilisearch_api_key", lambda n, r: r),
    "LOG_LEVEL": ("log_level", _level),
    "POCHO_MAX_SOCKET_MESSAGE_BYTES": ("max_socket_message_bytes", lambda n, r: _int(n, r, 1024, 16 << 20)),
    "POCHO_MAX_HTTP_BODY_BYTES": ("max_http_body_bytes", lambda n, r: _int(n, r, 1024, 64 << 20)),
    "POCHO_SOCKET_CONNECT_TIMEOUT": ("socket_connect_timeout", lambda n, r: _float(n, r, 0.1, 300)),
    "POCHO_PING_INTERVAL": ("ping_interval", lambda n, r: _float(n, r, 0.05, 300)),
    "POCHO_PING_TIMEOUT": ("ping_timeout", lambda n, r: _float(n, r, 0.05, 300)),
    "POCHO_SESSION_EXPIRY_GRACE": ("session_expiry_grace", lambda n, r: _float(n, r, 0.0, 300)),
    "POCHO_ACTOR_IDLE_SECONDS": ("actor_idle_seconds", lambda n, r: _float(n, r, 0.05, 86400)),
    "POCHO_ACTOR_MAILBOX_SIZE": ("actor_mailbox_size", lambda n, r: _int(n, r, 1, 1 << 20)),
    "POCHO_ASK_TIMEOUT_SECONDS": ("ask_timeout_seconds", lambda n, r: _float(n, r, 0.01, 600)),
    "POCHO_WRITER_FLUSH_MS": ("writer_flush_ms", lambda n, r: _float(n, r, 0.0, 1000)),
    "POCHO_WRITER_BATCH_ROWS": ("writer_batch_rows", lambda n, r: _int(n, r, 1, 100_000)),
    "POCHO_WRITER_QUEUE_MAX": ("writer_queue_max", lambda n, r: _int(n, r, 1, 10_000_000)),
    "POCHO_WRITER_CONNECTIONS": ("writer_connections", lambda n, r: _int(n, r, 1, 64)),
    "POCHO_WRITER_BULK": ("writer_bulk", _bool),
    "POCHO_WRITER_BULK_JSON": ("writer_bulk_json", _bool),
    "POCHO_WRITER_SLOW_MS": ("writer_slow_ms", lambda n, r: _float(n, r, 0.0, 60_000)),
    "POCHO_EXPIRY_SCALE": ("expiry_scale", lambda n, r: _float(n, r, 0.0001, 1.0)),
    "POCHO_SWEEP_SECONDS": ("sweep_seconds", lambda n, r: _float(n, r, 0.05, 3600)),
    "POCHO_DB_POOL_SIZE": ("db_pool_size", lambda n, r: _int(n, r, 1, 200)),
    "POCHO_ORDER_UNPAID_CANCEL_SECONDS": ("order_unpaid_cancel_seconds", lambda n, r: _float(n, r, 1, 86400)),
    "POCHO_ORDER_SLA_SCALE": ("order_sla_scale", lambda n, r: _float(n, r, 0.0001, 1.0)),
    "POCHO_SLA_PREP_START_MINUTES": ("sla_prep_start_minutes", lambda n, r: _float(n, r, 0.01, 1440)),
    "POCHO_SLA_READY_GRACE_MINUTES": ("sla_ready_grace_minutes", lambda n, r: _float(n, r, 0.01, 1440)),
    "POCHO_SLA_UNASSIGNED_MINUTES": ("sla_unassigned_minutes", lambda n, r: _float(n, r, 0.01, 1440)),
    "POCHO_SLA_DELIVERY_MARGIN_MINUTES": ("sla_delivery_margin_minutes", lambda n, r: _float(n, r, 0.01, 1440)),
    "POCHO_ASSIGNMENT_OFFER_SECONDS": ("assignment_offer_seconds", lambda n, r: _float(n, r, 0.1, 600)),
    "POCHO_RIDER_HEARTBEAT_SECONDS": ("rider_heartbeat_seconds", lambda n, r: _float(n, r, 0.1, 3600)),
    "POCHO_GC_THRESHOLD": ("gc_threshold", lambda n, r: _gc_threshold(n, r)),
    "POCHO_RIDER_LOCATION_FLUSH_MS": ("rider_location_flush_ms", lambda n, r: _float(n, r, 10, 60_000)),
    # analytics and AI (issue 11)
    "POCHO_ANALYTICS_REFRESH_SECONDS": ("analytics_refresh_seconds", lambda n, r: _float(n, r, 0.01, 3600)),
    "FEATURE_AUTO_BID": ("feature_auto_bid", _bool),
    "AUTO_BID_URL": ("auto_bid_url", lambda n, r: r or None),
    "AUTO_BID_KEY": ("auto_bid_key", lambda n, r: r),
    "FEATURE_AI_RECOMMENDATIONS": ("feature_ai_recommendations", _bool),
    "AI_RECOMMENDATIONS_URL": ("ai_recommendations_url", lambda n, r: r or None),
    "AI_RECOMMENDATIONS_KEY": ("ai_recommendations_key", lambda n, r: r),
    "FEATURE_AI_ETA": ("feature_ai_eta", _bool),
    "AI_ETA_URL": ("ai_eta_url", lambda n, r: r or None),
    "AI_ETA_KEY": ("ai_eta_key", lambda n, r: r),
    "AI_TIMEOUT_MS": ("ai_timeout_ms", lambda n, r: _float(n, r, 10, 10_000)),
    "AI_BREAKER_FAILURES": ("ai_breaker_failures", lambda n, r: _int(n, r, 1, 1000)),
    "AI_BREAKER_RESET_SECONDS": ("ai_breaker_reset_seconds", lambda n, r: _float(n, r, 0.01, 3600)),
    "AI_ETA_REFRESH_MS": ("ai_eta_refresh_ms", lambda n, r: _float(n, r, 10, 60_000)),
    "AI_ETA_FRESH_SECONDS": ("ai_eta_fresh_seconds", lambda n, r: _float(n, r, 0.1, 3600)),
    # payments (issue 8) variables go below this line
    "PAYSTACK_BASE_URL": ("paystack_base_url", lambda n, r: r),
    "FLUTTERWAVE_SECRET_KEY": ("flutterwave_secret_key", lambda n, r: r),
    "FLUTTERWAVE_BASE_URL": ("flutterwave_base_url", lambda n, r: r),
    "FLUTTERWAVE_SIGNATURE_V4": ("flutterwave_signature_v4", _bool),
    "PLATFORM_COMMISSION_BPS": ("platform_commission_bps", lambda n, r: _int(n, r, 0, 10_000)),
    "PAYMENT_PROVIDER_TIMEOUT": ("payment_provider_timeout", lambda n, r: _float(n, r, 0.1, 120)),
    "PAYMENT_RECONCILE_SECONDS": ("payment_reconcile_seconds", lambda n, r: _float(n, r, 0.05, 3600)),
    "PAYMENT_REVERIFY_AFTER_SECONDS": ("payment_reverify_after_seconds", lambda n, r: _float(n, r, 0, 86400)),
    "PAYMENT_INBOX_MAX_AGE_SECONDS": ("payment_inbox_max_age_seconds", lambda n, r: _float(n, r, 60, 30 * 86400)),
    "PAYMENT_REDIRECT_URL": ("payment_redirect_url", lambda n, r: r),
    "PAYMENT_EMAIL_DOMAIN": ("payment_email_domain", lambda n, r: r),
    # users (issue 15) variables go below this line
    "POCHO_REFRESH_GRACE_SECONDS": ("refresh_grace_seconds", lambda n, r: _float(n, r, 0.0, 600)),
    "POCHO_PII_KEY": ("pii_key", lambda n, r: _pii(n, r, parse_key)),
    "POCHO_PII_OLD_KEYS": (
        "pii_old_keys",
        lambda n, r: _pii(n, r, lambda v: [parse_key(k) for k in v.split(",") if k]),
    ),
    "POCHO_PII_INDEX_KEY": ("pii_index_key", lambda n, r: _pii(n, r, parse_index_key)),
    "POCHO_PII_OLD_INDEX_KEY": ("pii_old_index_key", lambda n, r: _pii(n, r, lambda v: v and parse_index_key(v))),
    # outages and abuse (issue 14) variables go below this line
    "POCHO_DB_ACQUIRE_TIMEOUT": ("db_acquire_timeout", lambda n, r: _float(n, r, 0.05, 60)),
    "POCHO_DB_QUERY_TIMEOUT": ("db_query_timeout", lambda n, r: _float(n, r, 0.05, 600)),
    "POCHO_REDIS_TIMEOUT": ("redis_timeout", lambda n, r: _float(n, r, 0.05, 60)),
    "POCHO_REDIS_HEALTH_CHECK_SECONDS": ("redis_health_check_seconds", lambda n, r: _int(n, r, 0, 3600)),
    "POCHO_SOCKET_COMMAND_RATE": ("socket_command_rate", lambda n, r: _float(n, r, 0.1, 1_000_000)),
    "POCHO_SOCKET_COMMAND_BURST": ("socket_command_burst", lambda n, r: _int(n, r, 1, 1_000_000)),
    "POCHO_SOCKET_BACKLOG": ("socket_backlog", lambda n, r: _int(n, r, 1, 100_000)),
    "POCHO_SOCKET_MSGPACK": ("socket_msgpack", _bool),
    "POCHO_HTTP_HEADER_TIMEOUT": ("http_header_timeout", lambda n, r: _float(n, r, 0.1, 600)),
    "POCHO_HTTP_BODY_TIMEOUT": ("http_body_timeout", lambda n, r: _float(n, r, 0.1, 3600)),
    "POCHO_HTTP_MAX_CONNECTIONS_PER_IP": ("http_max_connections_per_ip", lambda n, r: _int(n, r, 0, 1_000_000)),
    "POCHO_HTTP_KEEPALIVE_TIMEOUT": ("http_keepalive_timeout", lambda n, r: _float(n, r, 1, 3600)),
    # notifications (issue 10) variables go below this line
    "NOTIFY_DISPATCH": ("notify_dispatch", _bool),
    "FCM_SERVICE_ACCOUNT_JSON": ("fcm_service_account_json", lambda n, r: _service_account(n, r)),
    "FCM_BASE_URL": ("fcm_base_url", lambda n, r: r),
    "TERMII_API_KEY": ("termii_api_key", lambda n, r: r.strip()),
    "TERMII_SENDER_ID": ("termii_sender_id", lambda n, r: _text(n, r, 3, 11)),
    "TERMII_BASE_URL": ("termii_base_url", lambda n, r: r),
    "TERMII_CHANNEL": ("termii_channel", lambda n, r: _choice(n, r, ("dnd", "generic"))),
    "NOTIFY_PROVIDER_TIMEOUT": ("notify_provider_timeout", lambda n, r: _float(n, r, 0.1, 60)),
    "NOTIFY_BATCH_SIZE": ("notify_batch_size", lambda n, r: _int(n, r, 1, 1000)),
    "NOTIFY_CONCURRENCY": ("notify_concurrency", lambda n, r: _int(n, r, 1, 1000)),
    "NOTIFY_POLL_SECONDS": ("notify_poll_seconds", lambda n, r: _float(n, r, 0.01, 3600)),
    "NOTIFY_LEASE_SECONDS": ("notify_lease_seconds", lambda n, r: _float(n, r, 1, 3600)),
    "NOTIFY_MAX_ATTEMPTS": ("notify_max_attempts", lambda n, r: _int(n, r, 1, 100)),
    "NOTIFY_BACKOFF_BASE": ("notify_backoff_base", lambda n, r: _float(n, r, 0.01, 3600)),
    "NOTIFY_BACKOFF_CAP": ("notify_backoff_cap", lambda n, r: _float(n, r, 0.01, 86400)),
    "NOTIFY_PUSH_CAP": ("notify_push_cap", lambda n, r: _int(n, r, 1, 1000)),
    "NOTIFY_PUSH_WINDOW_SECONDS": ("notify_push_window_seconds", lambda n, r: _float(n, r, 1, 86400)),
    "NOTIFY_MAX_DEVICES": ("notify_max_devices", lambda n, r: _int(n, r, 1, 100)),
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment; raise ConfigError naming the bad variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for var, (attr, parse) in _ENV.items():
        raw = env.get(var)
        if raw is not None:
            values[attr] = parse(var, raw)
    settings = Settings(**values)
    _check_cluster(settings)
    _check_secrets(settings, env)
    check_notify(settings)  # notifications (issue 10)
    return settings


def _check_cluster(settings: Settings) -> None:
    """A node must stop serving a shard before its lease can pass on, with time to renew."""
    if settings.cluster_margin_ms * 2 >= settings.cluster_shard_lease_ms:
        raise ConfigError("POCHO_CLUSTER_MARGIN_MS must be under half of POCHO_CLUSTER_SHARD_LEASE_MS")


def _check_secrets(settings: Settings, env: Mapping[str, str]) -> None:
    if not settings.production:
        return
    for var, value, min_len in (
        ("JWT_SECRET", settings.jwt_secret, 32),
        ("POCHO_ADMIN_KEY", settings.admin_key, 16),
        ("POCHO_PII_KEY", settings.pii_key, 16),  # users (issue 15)
        ("POCHO_PII_INDEX_KEY", settings.pii_index_key, 16),  # users (issue 15)
    ):
        if var not in env or value in _DEFAULT_SECRETS:
            raise ConfigError(f"{var} must be set to a non-default secret when POCHO_ENV=production")
        if len(value) < min_len:
            raise ConfigError(f"{var} must be at least {min_len} characters when POCHO_ENV=production")


# ---------------------------------------------------------------- notifications (issue 10)


def _text(name: str, raw: str, lo: int, hi: int) -> str:
    if not lo <= len(raw.strip()) <= hi:
        raise ConfigError(f"{name} must be {lo} to {hi} characters")
    return raw.strip()


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def _service_account(name: str, raw: str) -> str:
    """The key file's JSON (given inline or as a path), checked now; the key is never echoed."""
    text = raw.strip()
    if text and not text.startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {raw!r} ({exc.strerror})") from None
    if text:
        try:
            ServiceAccount.from_json(text)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return text


def check_notify(settings: Settings) -> None:
    """Production never sends verification codes to the development recorder."""
    if settings.production and not settings.termii_api_key:
        raise ConfigError(
            "TERMII_API_KEY must be set when POCHO_ENV=production: "
            "verification SMS would otherwise go to the development recorder"
        )
