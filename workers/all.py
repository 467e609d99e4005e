"""Every actor module, for `dramatiq workers.all` and the web process, and their periodic schedule."""

from workers import audit, deletion, dsr, inbound, mail, maintenance, retention, scheduler, subject_data

__all__ = ["audit", "deletion", "dsr", "inbound", "mail", "maintenance", "retention", "scheduler", "subject_data"]
