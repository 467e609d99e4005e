"""Every actor module, for `dramatiq workers.all` and the web process."""

from workers import audit, dsr, maintenance

__all__ = ["audit", "dsr", "maintenance"]
