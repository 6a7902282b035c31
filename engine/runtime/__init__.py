"""The actor runtime: mailboxes, asks and tells, timers, activation and passivation."""
