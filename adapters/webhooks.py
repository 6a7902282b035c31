"""Provider webhooks: signature checks over the raw body bytes, and reading a verified body
into the few facts payments need. No I/O.

Signatures (checked before the body is parsed, bytes compared in constant time):
- Paystack: `x-paystack-signature` = lowercase hex HMAC-SHA512 of the raw body keyed with the
  secret key.
- Flutterwave v3: `verif-hash` equal to the configured secret hash. Flutterwave v4 (where
  enabled): `flutterwave-signature` = base64 HMAC-SHA256 of the raw body keyed with the secret
  hash.

A delivery is identified by provider + transaction id + event type (the inbox's unique key):
a charge's transaction id is the provider's `data.id`; a Paystack refund event has none, so its
`refund_reference` (else the transaction reference and amount) stands in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine import payments as pay

CHARGE, REFUND, OTHER = "charge", "refund", "other"
REDACTED = "[redacted]"
# Card, customer and network details never stored: keys removed wherever they appear.
_SENSITIVE = frozenset(
    {
        "authorization",
        "card",
        "customer",
        "email",
        "phone",
        "phone_number",
        "ip",
        "ip_address",
        "device_fingerprint",
        "account_number",
        "account_name",
        "bin",
        "last4",
        "first_6digits",
        "last_4digits",
        "signature",
        "authorization_code",
        "log",
    }
)


@dataclass(frozen=True, slots=True)
class Delivery:
    event_type: str
    kind: str  # CHARGE, REFUND, OTHER
    tx_id: str
    reference: str | None
    event_id: str  # the provider's event id where it has one, else the transaction id
    refund_kobo: int | None = None
    refund_status: str | None = None  # processed, failed, pending... (refund events)
    payment_tx_id: str | None = None  # the refunded transaction's provider id (Flutterwave refunds)


class BadDelivery(ValueError):
    """A verified body that is not a webhook we can read (400)."""


def paystack_signed(raw: bytes, headers: Mapping[str, str], secret_key: str) -> bool:
    given = headers.get("x-paystack-signature", "")
    if not secret_key or not given:
        return False
    expected = hmac.new(secret_key.encode(), raw, hashlib.sha512).hexdigest()
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def flutterwave_signed(raw: bytes, headers: Mapping[str, str], secret_hash: str, accept_v4: bool) -> bool:
    if not secret_hash:
        return False
    v3 = headers.get("verif-hash")
    if v3 is not None:
        return hmac.compare_digest(v3.encode(), secret_hash.encode())
    v4 = headers.get("flutterwave-signature")
    if v4 is not None and accept_v4:
        expected = base64.b64encode(hmac.new(secret_hash.encode(), raw, hashlib.sha256).digest())
        return hmac.compare_digest(v4.strip().encode(), expected)
    return False


def redact(value: Any) -> Any:
    """The payload without card, customer and network details (kept: ids, references, amounts,
    statuses, metadata)."""
    if isinstance(value, dict):
        return {k: (REDACTED if k in _SENSITIVE else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _body(parsed: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(parsed, dict):
        raise BadDelivery("the body must be a JSON object")
    event, data = parsed.get("event"), parsed.get("data")
    if not isinstance(event, str) or not event or len(event) > 100:
        raise BadDelivery("event is missing")
    if not isinstance(data, dict):
        raise BadDelivery("data is missing")
    return event, data


def paystack_delivery(parsed: Any) -> Delivery:
    event, data = _body(parsed)
    if event.startswith("refund."):
        reference = _str(data.get("transaction_reference"))
        try:
            amount = int(str(data.get("amount")))
        except ValueError:
            raise BadDelivery("refund amount is not an integer of kobo") from None
        tx = _str(data.get("refund_reference")) or _str(data.get("id")) or f"{reference}:{amount}"
        status = _str(data.get("status")) or event.removeprefix("refund.")
        return Delivery(event, REFUND, tx, reference, tx, refund_kobo=amount, refund_status=status)
    tx_id, reference = _str(data.get("id")), _str(data.get("reference"))
    if tx_id is None and reference is None:
        raise BadDelivery("data.id and data.reference are missing")
    kind = CHARGE if event.startswith("charge.") and reference is not None else OTHER
    tx = tx_id or f"ref:{reference}"
    return Delivery(event, kind, tx, reference, tx)


_FLW_REFUND_DONE = {"completed", "completed-bank-transfer", "completed-mpgs", "processed", "successful"}


def flutterwave_delivery(parsed: Any) -> Delivery:
    event, data = _body(parsed)
    if "refund" in event.lower():
        reference = _str(data.get("tx_ref"))
        tx = _str(data.get("id")) or _str(data.get("flw_ref"))
        if tx is None:
            raise BadDelivery("data.id is missing")
        try:
            amount = pay.naira_to_kobo(data.get("amount_refunded", data.get("amount")))
        except ValueError:
            raise BadDelivery("refund amount is not a number") from None
        raw_status = (_str(data.get("status")) or "").lower()
        status = "processed" if raw_status in _FLW_REFUND_DONE else "failed" if raw_status == "failed" else raw_status
        paid_tx = _str(data.get("tx_id"))
        return Delivery(
            event, REFUND, tx, reference, tx, refund_kobo=amount, refund_status=status, payment_tx_id=paid_tx
        )
    tx_id, reference = _str(data.get("id")), _str(data.get("tx_ref"))
    if tx_id is None and reference is None:
        raise BadDelivery("data.id and data.tx_ref are missing")
    kind = CHARGE if event.startswith("charge.") and reference is not None else OTHER
    tx = tx_id or f"ref:{reference}"
    return Delivery(event, kind, tx, reference, tx)
