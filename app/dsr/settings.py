"""What the DSR services need from the app's configuration, passed in (no service reads current_app)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.addresses import InvalidAddress, normalise_email
from app.mail.outbox import msgid_domain_for


@dataclass(frozen=True)
class DsrSettings:
    """Addresses the forward needs (from app.config)."""

    privacy_address: str
    msgid_domain: str

    @property
    def reply_to(self) -> str | None:
        """Where controllers' replies go: the privacy address, unless it is not routable (the embedded default *.localhost)."""
        try:
            return normalise_email(self.privacy_address)
        except InvalidAddress:
            return None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DsrSettings:
        """PRIVACY_ADDRESS (where controllers reply) and the Message-ID domain."""
        return cls(privacy_address=str(config.get("PRIVACY_ADDRESS") or "privacy@desk.localhost"), msgid_domain=msgid_domain_for(config))
