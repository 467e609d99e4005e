"""Every actor module, for `dramatiq workers.all` and the web process."""

from workers import audit, deletion, dsr, inbound, mail, maintenance, subject_data

__all__ = ["audit", "deletion", "dsr", "inbound", "mail", "maintenance", "subject_data"]
