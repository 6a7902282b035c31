"""Statuses of a meal request and of its offers.

Their own module so the rules (engine.negotiation) and the views (engine.negotiation_views),
which both test them, share one definition without importing each other.
"""

# Offer statuses
PENDING, COUNTERED, ACCEPTED = "PENDING", "COUNTERED", "ACCEPTED"
REJECTED, WITHDRAWN, EXPIRED = "REJECTED", "WITHDRAWN", "EXPIRED"
LIVE = frozenset({PENDING, COUNTERED})
# Request statuses (EXPIRED is shared with offers)
OPEN, CANCELLED = "OPEN", "CANCELLED"
