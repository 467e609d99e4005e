"""The DSR domain's part of app creation: it fills the core's registries (`create_app` calls `register(app)`).

The registries are process-wide (`app.mail.intake.REGISTRY`, `app.mail.policies.POLICIES`) and registration is
by name and idempotent, so every app a process creates (web, workers, CLI,
tests) leaves exactly one entry per handler; services reach them without an app.
"""

from __future__ import annotations

from flask import Flask

from app.dsr import communication, communication_delivery, delivery, gate, intake
from app.mail.intake import REGISTRY, IntakeRegistry
from app.mail.outcomes import HOOKS, DeliveryHooks
from app.mail.policies import POLICIES, PolicyRegistry


def register_intake(registry: IntakeRegistry) -> None:
    """The DSR intake handlers, in the order they are asked, and the ticket finder of outbox rows about a request."""
    # A controller's reply to a forward; skipped while no forward was ever sent (its precheck, read beside the ingest's lookup).
    registry.add("dsr.instruction", intake.claim_instruction, precheck=intake.ANY_FORWARD_SENT)
    registry.add("dsr.communication", communication.claim_communication)  # a complaint or notice for the controller (P§11.2)
    registry.add("dsr.request", intake.claim_request)  # new mail to the privacy address
    registry.add("dsr.suggestion", intake.suggest_request, fallback=True)  # after every other domain's handlers
    registry.add_ticket_finder("dsr", intake.ticket_of_dsr)
    registry.add_reference_finder("dsr", intake.ticket_of_reference)  # "DSR-2026-000123" in a subject


def register_policies(policies: PolicyRegistry) -> None:
    """The DSR outbound policies: the instruction gate first (asked when an email is queued and when it is claimed for sending)."""
    policies.add(gate.POLICY_NAME, gate.instruction_policy)
    policies.add(communication.POLICY_NAME, communication.communication_policy)  # a communication's sender gets nothing


def register_delivery(hooks: DeliveryHooks) -> None:
    """What the relay did with a forward settles it: accepted -> forwarded, refused or bounced -> officers alerted at once."""
    hooks.add("dsr.forward_delivery", delivery.on_delivery)
    hooks.add("dsr.communication_delivery", communication_delivery.on_delivery)  # Pexgle §11.2: a notice that did not arrive


def register(app: Flask) -> None:
    """Register the DSR domain with the core (called once per app by `create_app`; safe to call again)."""
    register_intake(REGISTRY)
    register_policies(POLICIES)
    register_delivery(HOOKS)
