"""The tamper-evident audit log: hash-chained events, database triggers, signed checkpoints."""
