"""Who acted: a staff member, a system job, or a controller by email."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PrincipalKind = Literal["staff", "system", "controller"]


@dataclass(frozen=True)
class Principal:
    """The acting party passed to services as `by=`; never personal data beyond an id."""

    kind: PrincipalKind
    id: int | None = None
    name: str = ""

    @classmethod
    def system(cls, job: str) -> Principal:
        """A scheduled job, worker or operator command."""
        return cls(kind="system", name=job)

    @classmethod
    def staff(cls, user_id: int) -> Principal:
        """A logged-in staff member."""
        return cls(kind="staff", id=user_id)

    @property
    def label(self) -> str:
        """A log-safe description: ids and job names only."""
        return f"staff:{self.id}" if self.kind == "staff" else f"{self.kind}:{self.name or self.id}"
