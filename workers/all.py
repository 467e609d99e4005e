"""Every actor module, for `dramatiq workers.all` and the web process."""

from workers import audit, dsr, mail, maintenance

__all__ = ["audit", "dsr", "mail", "maintenance"]
