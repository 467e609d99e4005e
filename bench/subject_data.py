"""Find-all-data for one subject and erasure of a subject with 1,000 messages, at 1,000,000 tickets (Postgres).

    .venv/bin/python bench/subject_data.py [--tickets 1000000] [--messages 200000] [--subjects 3] [--runs 30]

Creates a fresh Postgres database (dropped afterwards) and migrates it; makes
10 controllers and an agent through the services; loads the tickets with
the generator in bench/common.py that bench/queue_page.py uses (COPY, every
personal value encrypted per row, blind index); COPYs `--messages`
background messages (one per ticket, sender email encrypted with its blind
index, a body); then, through the services, `--subjects` subjects of the
first controller, each with 20 tickets of 50 messages (1,000; every inbound
one with its raw original), an attachment per ticket, a DSR forwarded to the
controller and a confirmed `erase` instruction.

Measures (warm; median and max):
- `app.subject_data.service.find_for` (the counts the DSR page shows before
  anything is done: tickets by requester blind index, messages the subject
  sent elsewhere by sender blind index, message / attachment / outbox counts),
  `--runs` times on the first subject, with the EXPLAIN (ANALYZE, BUFFERS) of
  each of its statements;
- the erasure of each subject: `service.run_to_end` as the worker runs it
  (batches of 250 messages, each committed with its cursor, plus tickets,
  references, held quarantine, the DSR's subject fields), wall time from the
  first batch to the finished report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import capture, copy_bytes, desk_with_tickets, explain_all, libpq_url, timed  # noqa: E402 - after the sys.path line above

MESSAGE_COLUMNS = "id, ticket_id, direction, key_owner, sender_email_ct, sender_email_bidx, body_text_ct, is_auto_reply, flags, notes, created_at, row_uid"
TICKETS_PER_SUBJECT = 20
MESSAGES_PER_TICKET = 50


def load_messages(app: Any, database_url: str, count: int) -> None:
    """`count` background messages by COPY, one on each of the first tickets, encrypted for that ticket's controller."""
    import psycopg

    from app.crypto.cipher import blind_index, encrypt_field
    from app.crypto.keys import active_key, cache_for
    from app.extensions import db

    url = libpq_url(database_url)
    with psycopg.connect(url) as conn:
        owners = conn.execute("SELECT id, key_owner FROM tickets ORDER BY id LIMIT %s", (count,)).fetchall()
    with app.app_context(), db.session_scope() as session:
        keys = {o: active_key(session.connection(), cache_for(session), f"controller:{o}") for o in {o for _, o in owners}}
    lines = []
    stamp = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).isoformat()
    for n, (ticket_id, owner) in enumerate(owners, start=1):
        key, uid = keys[owner], uuid.uuid4().hex
        email = f"sender{n}@example.org"
        email_ct = copy_bytes(encrypt_field(key.aead, key.id, email.encode(), table="ticket_messages", column="sender_email_ct", row_uid=uid))
        body_ct = copy_bytes(encrypt_field(key.aead, key.id, b"Hello, a question about my order.", table="ticket_messages", column="body_text_ct", row_uid=uid))
        bidx = copy_bytes(blind_index(key.index_key, "email", email))
        lines.append(f"{n}\t{ticket_id}\tinbound\t{owner}\t{email_ct}\t{bidx}\t{body_ct}\tf\t[]\t[]\t{stamp}\t{uid}\n")
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY ticket_messages ({MESSAGE_COLUMNS}) FROM STDIN") as copy:
            copy.write("".join(lines))
        conn.execute("SELECT setval(pg_get_serial_sequence('ticket_messages', 'id'), %s)", (count,))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE ticket_messages")
        conn.execute("VACUUM ANALYZE tickets")


def make_subject(app: Any, controller_id: int, n: int) -> tuple[int, str]:
    """A subject with 1,000 messages in 20 tickets, a forwarded DSR and a confirmed erase instruction; returns (dsr id, email)."""
    from app.controllers.models import Controller
    from app.db import utcnow
    from app.dsr import instructions as dsr_instructions
    from app.dsr.forward import forward
    from app.dsr.requests import DsrInput, create_from_ticket
    from app.dsr.settings import DsrSettings
    from app.extensions import db
    from app.principal import Principal
    from app.tickets import service as tickets

    by = Principal.system("bench")
    email, name = f"erase.me.{n}@subject.example", f"Erin Subject{n}"
    now = utcnow()
    first = None
    with app.app_context():
        for t in range(TICKETS_PER_SUBJECT):
            with db.session_scope() as session:
                ticket = tickets.create_ticket(
                    session, controller_id=controller_id, requester_name=name, requester_email=email, subject=f"Order {t} of {name}", by=by, now=now
                )
                first = first or ticket.id
                for i in range(MESSAGES_PER_TICKET):
                    inbound = i % 2 == 0
                    body = f"Hello, I am {name} <{email}>. Message {i} about order {t}.\n" + "Some ordinary text. " * 20
                    message = tickets.add_message(
                        session,
                        ticket,
                        tickets.MessageInput(
                            direction="inbound" if inbound else "outbound",
                            sender_name=name if inbound else "Agent",
                            sender_email=email if inbound else "agent@desk.example",
                            subject=f"Re: order {t}",
                            body_text=body,
                            raw=f"From: {name} <{email}>\r\nSubject: order {t}\r\n\r\n{body}".encode() if inbound else None,
                        ),
                        by=by,
                        now=now,
                    )
                    if i == 0:
                        tickets.add_attachment(
                            session, message, filename="receipt.pdf", content_type="application/pdf", content=b"%PDF-1.4 " * 2000, by=by, now=now
                        )
        with db.session_scope() as session:
            settings = DsrSettings.from_config(app.config)
            data = DsrInput(types=["erasure"], subject_email=email, subject_name=name, request_text=f"{name} asks for erasure.")
            assert first is not None  # TICKETS_PER_SUBJECT >= 1
            dsr = create_from_ticket(session, first, data, controller_ids=[controller_id], by=by, now=now)
            forward(session, dsr.id, settings=settings, by=by, now=now)
            controller = session.get(Controller, controller_id)
            assert controller is not None
            contact = controller.contact_emails("dsr")[0]
            instruction = dsr_instructions.receive(
                session,
                dsr,
                controller_id=controller_id,
                sender_email=contact,
                reply_text="Erase.",
                raw=b"x",
                raw_sha256="0" * 64,
                message_pk=None,
                by=by,
                now=now,
            )
            dsr_instructions.confirm(session, dsr.id, instruction.id, "erase", by=by, now=now)
            return dsr.id, email


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    import psycopg

    from app.db import utcnow
    from app.extensions import db
    from app.principal import Principal
    from app.subject_data import service
    from app.subject_data.models import SubjectRun

    with desk_with_tickets(args.tickets, PRIVACY_ADDRESS="privacy@desk.example") as (desk, controller_ids, agent):
        app, database_url = desk.app, desk.database_url
        started = time.monotonic()
        load_messages(app, database_url, args.messages)
        print(f"loaded {args.messages:,} background messages in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        subjects = [make_subject(app, controller_ids[0], n) for n in range(args.subjects)]
        print(f"made {args.subjects} subjects of {TICKETS_PER_SUBJECT * MESSAGES_PER_TICKET} messages each in {time.monotonic() - started:.0f} s")
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            for table in ("tickets", "ticket_messages", "ticket_attachments", "outbox_emails", "dsrs"):
                conn.execute(f"VACUUM ANALYZE {table}")

        dsr_id = subjects[0][0]

        def find_once() -> None:
            with app.app_context(), db.session_scope() as session:
                found = service.find_for(session, dsr_id, controller_ids[0])
                assert found.messages >= TICKETS_PER_SUBJECT * MESSAGES_PER_TICKET, found.counts

        with app.app_context(), db.session_scope() as session:
            counts = service.find_for(session, dsr_id, controller_ids[0]).counts
        find_med, find_max = timed(find_once, args.runs)
        with app.app_context(), db.session_scope() as session:
            # Inside a request's open transaction (keys already unwrapped): the part the DSR page adds.
            warm_med, warm_max = timed(lambda: service.find_for(session, dsr_id, controller_ids[0]), args.runs)
        find_sql = capture(app, find_once)
        find_plans = explain_all(database_url, find_sql)  # before the erasures change the data

        by = Principal.system("bench")
        erase_times: list[float] = []
        reports = []
        for sub_dsr, _ in subjects:
            with app.app_context():
                with db.session_scope() as session:
                    run_id = service.start(session, sub_dsr, controller_ids[0], "erase", by=by, now=utcnow()).id
                began = time.perf_counter()
                assert service.run_to_end(db.session_scope, run_id, by=by, clock=utcnow)
                erase_times.append(time.perf_counter() - began)
                with db.session_scope() as session:
                    run = session.get(SubjectRun, run_id)
                    assert run is not None
                    reports.append((run.state, dict(run.report.get("changed", {})), len(run.report.get("failed", []))))

        print()
        print(f"find-all-data counts for one subject: {counts}")
        print(f"find-all-data, own transaction ({args.runs} runs): median {find_med:.1f} ms, max {find_max:.1f} ms, {len(find_sql)} statements")
        print(f"find-all-data, in an open transaction ({args.runs} runs): median {warm_med:.1f} ms, max {warm_max:.1f} ms")
        median_erase = statistics.median(erase_times)
        print(f"erasure of a subject with 1,000 messages ({len(erase_times)} subjects): median {median_erase:.2f} s, max {max(erase_times):.2f} s")
        for state, changed, failed in reports:
            print(f"  run {state}: {changed}, failed {failed}")
        print()
        print("EXPLAIN of find-all-data:")
        print(find_plans)


if __name__ == "__main__":
    main()
