"""Every actor module, for `dramatiq workers.all` and the web process."""

from workers import maintenance

__all__ = ["maintenance"]
