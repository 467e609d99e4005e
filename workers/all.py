"""Every actor module, for `dramatiq workers.all` and the web process."""

from workers import audit, maintenance

__all__ = ["audit", "maintenance"]
