"""Email address and domain validation shared by every form, command and mail path."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from app.exceptions import Refused

_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")


class InvalidAddress(Refused, ValueError):
    """An email address or domain that the desk refuses; the message is safe to show."""


def normalise_email(raw: str) -> str:
    """A syntactically valid address, trimmed and lowercased; no DNS lookup."""
    value = (raw or "").strip()
    if not value:
        raise InvalidAddress("an email address is required")
    if any(ch in value for ch in "\r\n"):
        raise InvalidAddress("an email address may not contain line breaks")
    try:
        # Lowercased whole: no mail system the desk meets treats local parts by case.
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidAddress(f"not a valid email address: {exc}") from None


def mailbox(raw: str) -> str:
    """The mailbox an address delivers to, for matching people: trimmed, lowercased, any `+tag` dropped.

    `Jane+news@Example.org` and `jane@example.org` are the same person to the instruction gate and to
    routing (issue 12 item 4): common providers deliver both to one mailbox. Only the matching key: the
    address a message is sent to is never rewritten. No validation (a stored value is matched as it is).
    """
    value = (raw or "").strip().lower()
    local, at, domain = value.rpartition("@")
    if at and "+" in local and not local.startswith("+"):
        local = local.split("+", 1)[0]
        return f"{local}@{domain}"
    return value


def normalise_domain(raw: str) -> str:
    """A DNS domain name in lowercase (IDNA for non-ASCII), without a leading @."""
    value = (raw or "").strip().lower().lstrip("@").rstrip(".")
    try:
        value = value.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidAddress("not a valid domain name") from None
    if not _DOMAIN.match(value):
        raise InvalidAddress("not a valid domain name (example: example.com)")
    return value
