"""PostgreSQL: pool, migrations, query builders, the write-behind writer, outboxes."""
