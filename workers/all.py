"""Every actor module, for `dramatiq workers.all` and the web process."""

from workers import audit, dsr, inbound, mail, maintenance, subject_data

__all__ = ["audit", "dsr", "inbound", "mail", "maintenance", "subject_data"]
