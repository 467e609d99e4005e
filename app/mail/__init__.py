"""Mail: inbound (RFC 5322 -> tickets), threading, and the outbound outbox."""
