"""HTTP routes: accounts, catalogue, admin, health and metrics. Thin: validate, act, answer."""
