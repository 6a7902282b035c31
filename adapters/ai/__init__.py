"""Clients of the external ML services (docs/AI.md): auto-bid price suggestions, offer
recommendations and delivery ETAs. Each call has a strict total timeout and goes through a
circuit breaker; any failure is `AiUnavailable` and the caller uses the built-in behaviour."""
