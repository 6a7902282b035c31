"""Log hygiene for auth events: phone numbers appear in logs only masked.

The audit trail itself (table audit_log) is written by `persistence.audit.audit`.
"""

from __future__ import annotations


def mask_phone(phone: str) -> str:
    """For logs: every character but the last 4 replaced by '*'."""
    return "*" * max(len(phone) - 4, 0) + phone[-4:]
