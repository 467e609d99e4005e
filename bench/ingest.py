"""Inbound mail throughput: a generated corpus through the `mail ingest` logic on a fresh Postgres database.

    .venv/bin/python bench/ingest.py [--messages 1200] [--seed 7]

Creates a fresh Postgres database on BENCH_DATABASE_URL (default the local
server), migrates it, registers 5 controllers (domains and identifiers), then
generates a varied corpus (new requests from subjects and from controllers'
domains, replies threaded by In-Reply-To/References, quoted Gmail/Outlook
histories, HTML alternatives, 20-200 KB attachments, latin-1/cp1252 bodies,
auto-replies, malformed mail for the quarantine, exact re-deliveries) and runs
each message through `app.mail.inbound.ingest_committed` - parse, de-duplicate,
thread or route, encrypt and store, audit, commit: the work of one
`flask --app wsgi mail ingest` minus the process start. Prints messages/s and
per-message latency. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import fresh_postgres  # noqa: E402 - after the sys.path line above (run as a script)

FIRST = ["Jane", "Lukas", "Amélie", "Priya", "Tomasz", "Sofia", "Jürgen", "Aoife", "Mateo", "Ingrid", "Kwame", "Yuki"]
LAST = ["Roe", "Schneider", "Durand", "Nair", "Kowalski", "Rossi", "Müller", "Byrne", "García", "Olsen", "Mensah", "Tanaka"]
FREEMAIL = ["gmail.example", "outlook.example", "web.example", "posteo.example", "icloud.example"]
CONTROLLERS = [
    ("Bench Retail GmbH", "retail.example", "BR-1001"),
    ("Bench Travel AG", "travel.example", "BT-2002"),
    ("Bench Insurance Ltd", "insure.example", "BI-3003"),
    ("Bench Bistro S.r.l.", "bistro.example", "BB-4004"),
    ("Bench Telecom Kft.", "telecom.example", "BK-5005"),
]
REQUESTS = [
    "Please send me a copy of all personal data you hold about me.",
    "I want my account and every record about me deleted.",
    "My address changed; please correct it to the one below.",
    "I object to the use of my data for marketing. Stop sending offers.",
    "Please export my order history in a machine-readable format.",
    "Why did I receive this newsletter? I never subscribed.",
]
QUOTE_GMAIL = (
    "\n\nOn Mon, Nov 16, 2026 at 10:02 AM Support <support@desk.example> wrote:\n"
    "> Hello,\n> thank you for your message.\n> Could you confirm your customer number?\n"
)
QUOTE_OUTLOOK = (
    "\n\n________________________________\nFrom: Support <support@desk.example>\n"
    "Sent: Monday, November 16, 2026 10:02 AM\nSubject: Your request\n\nHello,\nplease confirm.\n"
)


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = f"{first}.{last}".lower().encode("ascii", "ignore").decode() + str(rng.randint(1, 999))
    return f"{first} {last}", f"{local}@{rng.choice(FREEMAIL)}"


def _headers(name: str, address: str, subject: str, message_id: str, extra: str = "") -> str:
    from email.header import Header

    display = Header(name, "utf-8").encode()
    encoded_subject = Header(subject, "utf-8").encode()
    return (
        f"From: {display} <{address}>\nTo: privacy@desk.localhost\nSubject: {encoded_subject}\n"
        f"Date: Mon, 16 Nov 2026 10:00:00 +0000\nMessage-ID: <{message_id}>\nMIME-Version: 1.0\n{extra}"
    )


def generate(count: int, seed: int) -> list[bytes]:
    """A varied corpus; replies point at earlier messages of the same corpus."""
    rng = random.Random(seed)
    corpus: list[bytes] = []
    sent: list[tuple[str, str, str, str]] = []  # (message id, name, address, subject) of earlier mail
    while len(corpus) < count:
        n = len(corpus)
        mid = f"bench-{seed}-{n}@mail.example"
        kind = rng.choices(
            ["new", "controller", "reply", "html", "attachment", "charset", "auto", "malformed", "duplicate"],
            weights=[30, 8, 25, 10, 8, 6, 6, 2, 5],
        )[0]
        if kind == "duplicate" and corpus:
            corpus.append(rng.choice(corpus))
            continue
        if kind == "malformed":
            corpus.append(rng.choice([b"\x00\xff garbage with no header\r\n", f"To: privacy@desk.localhost\nSubject: no sender {n}\n\nhello\n".encode()]))
            continue
        name, address = _person(rng)
        subject = rng.choice(["Data request", "Auskunft", "Delete my account", "Question about my data", "Correction", "Newsletter"])
        body = rng.choice(REQUESTS)
        if rng.random() < 0.3:
            body += f"\nMy customer number is {rng.choice(CONTROLLERS)[2]}."
        if kind == "controller":
            controller = rng.choice(CONTROLLERS)
            name, address = "Privacy Office", f"dpo@{controller[1]}"
        extra = ""
        if kind == "reply" and sent:
            parent_id, name, address, subject = rng.choice(sent)
            extra = f"In-Reply-To: <{parent_id}>\nReferences: <{parent_id}>\n"
            subject = "Re: " + subject
            body = rng.choice(["Thanks, that is all.", "Yes, please go ahead.", "The number is on the form."]) + rng.choice([QUOTE_GMAIL, QUOTE_OUTLOOK])
        if kind == "auto":
            extra += rng.choice(["Auto-Submitted: auto-replied\n", "Precedence: bulk\n", "X-Autoreply: yes\n"])
            subject = "Out of office: " + subject
        head = _headers(name, address, subject, mid, extra)
        if kind == "html":
            html = f"<html><body><p>{body}</p><img src='https://tracker.example/p.gif'><script>x()</script></body></html>"
            raw = head + f'Content-Type: multipart/alternative; boundary="alt"\n\n--alt\nContent-Type: text/plain; charset=utf-8\n\n{body}\n'
            raw += f"--alt\nContent-Type: text/html; charset=utf-8\n\n{html}\n--alt--\n"
            data = raw.encode()
        elif kind == "attachment":
            blob = rng.randbytes(rng.randint(20_000, 200_000))
            attached = base64.encodebytes(blob).decode()
            raw = head + f'Content-Type: multipart/mixed; boundary="mix"\n\n--mix\nContent-Type: text/plain; charset=utf-8\n\n{body}\n'
            raw += f'--mix\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="scan-{n}.pdf"\n'
            raw += f"Content-Transfer-Encoding: base64\n\n{attached}--mix--\n"
            data = raw.encode()
        elif kind == "charset":
            charset = rng.choice(["iso-8859-1", "windows-1252"])
            data = (head + f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: 8bit\n\n").encode() + (body + " Grüße, Gómez\n").encode(
                "latin-1", "replace"
            )
        else:
            data = (head + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + body + "\n").encode()
        corpus.append(data)
        sent.append((mid, name, address, subject.removeprefix("Re: ")))
    return corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from sqlalchemy import event

    from app import create_app
    from app import migrations as desk_migrations
    from app.controllers.service import ControllerInput, create_controller
    from app.db import utcnow
    from app.extensions import db
    from app.mail.inbound import IngestSettings, ingest_committed
    from app.principal import Principal
    from config.settings import config_from_env

    corpus = generate(args.messages, args.seed)
    print(f"corpus: {len(corpus)} messages, {sum(map(len, corpus)) / 1e6:.1f} MB")
    with fresh_postgres("ingest") as url, tempfile.TemporaryDirectory() as instance:
        desk_migrations.upgrade(url)
        env = {"DATABASE_URL": url, "SECRET_KEY": "bench-" * 8, "MASTER_SECRET": "bench-master-" * 4, "DESK_INSTANCE_PATH": instance}
        app = create_app(config_from_env(env))
        by = Principal.system("bench ingest")
        with app.app_context():
            with db.session_scope() as session:
                for name, domain, identifier in CONTROLLERS:
                    data = ControllerInput(name=name, dsr_contacts=[f"dpo@{domain}"], domains=[domain], identifiers=[identifier])
                    create_controller(session, data, by=by, now=utcnow())
            settings = IngestSettings.from_config(app.config)
            outcomes: Counter[str] = Counter()
            latencies = []
            shapes: Counter[str] = Counter()
            assert db.engine is not None

            def count_statement(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
                words = statement.split()
                table = next((w for prev, w in zip(words, words[1:], strict=False) if prev.upper() in ("FROM", "INTO", "UPDATE")), "?")
                shapes[f"{words[0].upper()} {table}"] += 1

            event.listen(db.engine, "before_cursor_execute", count_statement)
            started, cpu_started = time.perf_counter(), time.process_time()
            for raw in corpus:
                t0 = time.perf_counter()
                outcome = ingest_committed(db.session_scope, raw, settings=settings, by=by, clock=utcnow, source="pipe")
                latencies.append(time.perf_counter() - t0)
                outcomes[outcome.status] += 1
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        latencies.sort()
        total = sum(shapes.values())
        print(f"SQL statements: {total} ({total / len(corpus):.1f} a message); most frequent:")
        for shape, n in shapes.most_common(8):
            print(f"  {n / len(corpus):5.1f} a message  {shape}")
        print(f"outcomes: {dict(outcomes)}")
        print(f"ingested {len(corpus)} messages in {elapsed:.1f} s: {len(corpus) / elapsed:.1f} messages/s")
        print(f"ingest process CPU: {cpu:.1f} s ({cpu / len(corpus) * 1000:.1f} ms a message); load average {os.getloadavg()[0]:.1f} at the end")
        print(
            f"per message: p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
