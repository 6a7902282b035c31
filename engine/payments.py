"""Pure payment rules: what a verified provider outcome or a refund does to a payment.

No I/O: the services (pocho_rt.payment_service, pocho_rt.refunds) load the payment row under a
lock, ask these functions, write what they return and carry out the effects after commit.

States (payments.status; docs/PAYMENTS.md):

    INITIATED ──verified success──> SUCCESS (confirm the order)
        │                      └──> PAID_AFTER_CANCEL (order was cancelled: refund it)
        │                      └──> REVIEW (wrong reference, currency or amount; order already
        │                                   paid by another payment): ops decide
        └──verified failure──> FAILED ──verified success──> (as INITIATED)
    paid (SUCCESS | PAID_AFTER_CANCEL | REVIEW) ──refund──> REFUND_PENDING
        ──refund processed──> PARTIALLY_REFUNDED | REFUNDED; refund failed: back

Only forward moves: once money arrived (`paid_status` set) no verified outcome changes the
payment again (a failure never undoes a success; a repeated success is a no-op).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from engine.errors import DomainError
from engine.state import evolve

INITIATED, SUCCESS, FAILED, REVIEW = "INITIATED", "SUCCESS", "FAILED", "REVIEW"
PAID_AFTER_CANCEL, REFUND_PENDING = "PAID_AFTER_CANCEL", "REFUND_PENDING"
PARTIALLY_REFUNDED, REFUNDED = "PARTIALLY_REFUNDED", "REFUNDED"
STATUSES = (INITIATED, SUCCESS, FAILED, REVIEW, PAID_AFTER_CANCEL, REFUND_PENDING, PARTIALLY_REFUNDED, REFUNDED)
UNPAID = frozenset({INITIATED, FAILED})
PAID_OUTCOMES = frozenset({SUCCESS, PAID_AFTER_CANCEL, REVIEW})
CURRENCY = "NGN"
PROVIDERS = ("PAYSTACK", "FLUTTERWAVE")

# Verified outcomes (what the provider's verify API said).
V_SUCCESS, V_FAILED, V_PENDING, V_NOT_FOUND = "success", "failed", "pending", "not_found"

# Effects the service carries out after commit.
CONFIRM_ORDER, AUTO_REFUND, OPS_REVIEW = "confirm_order", "auto_refund", "ops_review"

# Review reasons (metric label `reason`).
R_REFERENCE, R_CURRENCY, R_AMOUNT, R_ALREADY_PAID = (
    "reference_mismatch",
    "currency_mismatch",
    "amount_short",
    "already_paid",
)

# Order statuses the rules look at (engine.orders spells them the same).
ORDER_PENDING, ORDER_CANCELED = "PENDING_PAYMENT", "CANCELED"


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    order_id: str
    provider: str
    reference: str
    amount_kobo: int  # what the order costs
    status: str
    currency: str = CURRENCY
    paid_status: str | None = None
    paid_kobo: int | None = None
    refunded_kobo: int = 0
    refund_pending_kobo: int = 0
    review_reason: str | None = None
    provider_tx_id: str | None = None


@dataclass(frozen=True, slots=True)
class Verified:
    """What the provider's verify API answered (never the webhook body's claims)."""

    outcome: str  # V_SUCCESS, V_FAILED, V_PENDING, V_NOT_FOUND
    reference: str | None = None
    amount_kobo: int | None = None
    currency: str | None = None
    tx_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    payment: Payment
    effects: tuple[str, ...] = ()


def naira_to_kobo(value: object) -> int:
    """A provider's naira amount (int, float or string, possibly with decimals) as integer kobo,
    through Decimal of its text so 7500.1 is 750010 and never 750009."""
    if isinstance(value, bool):
        raise ValueError("not an amount")
    try:
        naira = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not naira.is_finite() or naira < 0:
        raise ValueError(f"not an amount: {value!r}")
    return int((naira * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def kobo_to_naira(kobo: int) -> str:
    """Kobo as the decimal naira string Flutterwave takes ("7500.5")."""
    return format((Decimal(kobo) / 100).normalize(), "f")


def commission_kobo(amount_kobo: int, bps: int) -> int:
    """The platform's share of a split payment, rounded down to whole kobo (the vendor keeps it)."""
    return amount_kobo * bps // 10_000


def _review(p: Payment, reason: str, v: Verified) -> Decision:
    paid = v.amount_kobo if v.amount_kobo is not None else 0
    new = evolve(p, status=REVIEW, paid_status=REVIEW, paid_kobo=paid, review_reason=reason, provider_tx_id=v.tx_id)
    return Decision(new, (OPS_REVIEW,))


def apply_verified(p: Payment, v: Verified, order_status: str) -> Decision:
    """A verified provider outcome for payment `p` whose order is in `order_status`."""
    if p.status not in UNPAID:
        return Decision(p)  # money already arrived (or was judged): only forward, nothing again
    if v.outcome == V_FAILED:
        return Decision(
            p if p.status == FAILED else evolve(p, status=FAILED, provider_tx_id=v.tx_id or p.provider_tx_id)
        )
    if v.outcome != V_SUCCESS:
        return Decision(p)  # pending / not found: nothing is known yet
    if v.reference != p.reference:
        return _review(p, R_REFERENCE, v)
    if v.currency != CURRENCY or p.currency != CURRENCY:
        return _review(p, R_CURRENCY, v)
    if v.amount_kobo is None or v.amount_kobo < p.amount_kobo:
        return _review(p, R_AMOUNT, v)
    if order_status == ORDER_CANCELED:
        new = evolve(
            p, status=PAID_AFTER_CANCEL, paid_status=PAID_AFTER_CANCEL, paid_kobo=v.amount_kobo, provider_tx_id=v.tx_id
        )
        return Decision(new, (AUTO_REFUND,))
    if order_status != ORDER_PENDING:
        return _review(p, R_ALREADY_PAID, v)
    new = evolve(p, status=SUCCESS, paid_status=SUCCESS, paid_kobo=v.amount_kobo, provider_tx_id=v.tx_id)
    return Decision(new, (CONFIRM_ORDER,))


def confirm_refused(p: Payment, order_status: str) -> Decision:
    """The order refused the confirmation (it moved on between our read and its turn): a
    cancelled order makes the payment PAID_AFTER_CANCEL (refund), anything else REVIEW."""
    if p.status != SUCCESS:
        return Decision(p)
    if order_status == ORDER_CANCELED:
        return Decision(evolve(p, status=PAID_AFTER_CANCEL, paid_status=PAID_AFTER_CANCEL), (AUTO_REFUND,))
    return Decision(evolve(p, status=REVIEW, paid_status=REVIEW, review_reason=R_ALREADY_PAID), (OPS_REVIEW,))


# ---------------------------------------------------------------- refunds


def refundable_kobo(p: Payment) -> int:
    """What may still be refunded: paid, minus refunded and refunds in flight."""
    if p.paid_status is None or p.paid_kobo is None:
        return 0
    return max(p.paid_kobo - p.refunded_kobo - p.refund_pending_kobo, 0)


def _refund_status(p: Payment) -> str:
    assert p.paid_status is not None
    if p.refund_pending_kobo > 0:
        return REFUND_PENDING
    if p.paid_kobo is not None and p.refunded_kobo >= p.paid_kobo and p.refunded_kobo > 0:
        return REFUNDED
    if p.refunded_kobo > 0:
        return PARTIALLY_REFUNDED
    return p.paid_status


def request_refund(p: Payment, amount_kobo: int | None) -> tuple[Payment, int]:
    """Start a refund of `amount_kobo` (None: everything still refundable). Never more than was
    paid: `conflict` when nothing is left, `invalid` for an amount above what is left."""
    left = refundable_kobo(p)
    if p.paid_status is None or p.paid_kobo is None:
        raise DomainError("conflict", f"payment is {p.status}: no money arrived to refund")
    if left <= 0:
        raise DomainError("conflict", "nothing left to refund on this payment")
    amount = left if amount_kobo is None else amount_kobo
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise DomainError("invalid", "invalid amountKobo: must be a positive integer", {"amountKobo": "must be >= 1"})
    if amount > left:
        detail = f"must be at most {left} (paid {p.paid_kobo}, already refunded or pending {p.paid_kobo - left})"
        raise DomainError("invalid", f"invalid amountKobo: {detail}", {"amountKobo": detail})
    new = evolve(p, refund_pending_kobo=p.refund_pending_kobo + amount)
    return evolve(new, status=_refund_status(new)), amount


def refund_settled(p: Payment, amount_kobo: int, processed: bool) -> Payment:
    """A pending refund of `amount_kobo` finished: processed (money returned) or failed (the
    amount becomes refundable again)."""
    pending = max(p.refund_pending_kobo - amount_kobo, 0)
    refunded = p.refunded_kobo + (amount_kobo if processed else 0)
    new = evolve(p, refund_pending_kobo=pending, refunded_kobo=refunded)
    return evolve(new, status=_refund_status(new))
