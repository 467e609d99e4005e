"""The execution part of the DSR domain at app creation (`create_app` calls `register(app)`).

Registration is by name or authority kind and idempotent, so every app a
process creates (web, workers, CLI, tests) leaves exactly one entry:

- the request's hooks on the deletion engine (authority "instruction");
- the outbound policy of restrictions and objections (no reply on a restricted ticket, asked again at claim);
- the intake handler that flags new mail from an erased subject;
- where the file outbox keeps its copies, so an erasure deletes the `.eml` of a delivered email about the subject;
- the stores of its retention categories (DSR records, export files) on the engine.

(Not in `app.dsr.setup`: this package imports app.dsr, so the reverse import would
close a cycle between the two packages.)
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from app.deletion.categories import RECORD_STORES
from app.deletion.files import OUTBOX_FILES
from app.dsr.settings import DsrSettings
from app.mail.intake import REGISTRY
from app.mail.outbox_settings import OutboundSettings
from app.mail.policies import POLICIES
from app.mail.transport import FileTransport
from app.subject_data import aftercare, categories, erasure, policy, views


def _file_remover(transport: FileTransport) -> Callable[[str], bool]:
    def remove(message_id: str) -> bool:
        path = transport.path_for(message_id)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    return remove


def register(app: Flask) -> None:
    """Register the request's hooks, policy, intake handler and file remover (safe to call again)."""
    erasure.register(DsrSettings.from_config(app.config))
    RECORD_STORES.add(categories.DSR_RECORDS)
    RECORD_STORES.add(categories.EXPORT_FILES)
    POLICIES.add(policy.POLICY_NAME, policy.restriction_policy)
    # Before any claim, never claims; skipped when the ingest read its precheck (nobody ever erased) as false.
    REGISTRY.add("subject_data.erased_subject", aftercare.flag_new_mail, observer=True, precheck=aftercare.ANY_MARK)
    transport = OutboundSettings.from_config(app.config).transport
    if isinstance(transport, FileTransport):
        OUTBOX_FILES.add("file_outbox", _file_remover(transport))
    else:
        OUTBOX_FILES.discard("file_outbox")
    # The restriction guard for views outside this package that show ticket data (app.dsr.views).
    app.extensions["desk.ticket_guard"] = views.guard_ticket
