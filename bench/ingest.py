"""Inbound mail throughput: a generated corpus through the `mail ingest` logic on a fresh Postgres database.

    .venv/bin/python bench/ingest.py [--messages 1200] [--seed 7] [--controllers 5 1000]

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

Issue 11 item 7: in the same run it measures a raw ceiling (stdlib parse,
AES-GCM of body and requester, one INSERT and one commit a message, psycopg)
on the same corpus, interleaved with each desk run message by message (so both
see the same load on a shared machine), runs the desk at 5 and at 1,000 controllers (the cost must
not grow with their number), and counts the SQL statements of a plain message
(a new text/plain question to the support address).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import ADMIN_URL, fresh_postgres, libpq_url  # noqa: E402 - after the sys.path line above (run as a script)
from bench.row_ceiling import RowCapture, RowCeiling, Written, as_parameters  # noqa: E402 - after the sys.path line, as above

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


PLAIN_MESSAGES = 100


def plain_corpus(count: int, seed: int) -> list[bytes]:
    """New text/plain questions from people to the support address: the plainest mail the desk takes (a ticket, no DSR)."""
    rng = random.Random(seed + 1)
    out = []
    for n in range(count):
        name, address = _person(rng)
        head = _headers(name, address, "Question about my invoice", f"plain-{seed}-{n}@mail.example").replace("To: privacy@", "To: support@")
        out.append((head + "Content-Type: text/plain; charset=utf-8\n\n" + rng.choice(REQUESTS[5:]) + " Order 4471.\n").encode())
    return out


def sql_statements(sent: str) -> list[str]:
    """The SQL statements in one text sent to the server (the desk sends some pairs as one simple-protocol query)."""
    return [part for part in sent.split(";") if part.strip()]


def statement_shape(statement: str) -> str:
    """`VERB table` of a statement: the first table named outside parentheses (subqueries, EXISTS), else its first function."""
    depth, outer = 0, []
    for char in statement:
        depth += char == "("
        if depth == 0:
            outer.append(char)
        depth -= char == ")" and depth > 0
    words = "".join(outer).replace(",", " ").split()
    table = next(
        (
            w
            for prev, w in zip(words, words[1:], strict=False)
            if prev.upper() in ("FROM", "INTO", "UPDATE", "JOIN") and w.upper() != "AS" and not w.startswith("anon_")
        ),
        None,
    )
    if table is None:
        function = statement.split("(", 1)[0].split()[-1] if "(" in statement else "?"
        table = f"({function}...)" if function.upper() != "FROM" else "(subquery)"
    return f"{words[0].upper()} {table}"


class ServerWaits:
    """While entered: the wall and CPU time psycopg spends in `Connection.wait` (a query sent until its result is in).

    What the desk cannot save by CPU alone: the server's work and the network, plus psycopg's own sending and
    receiving (the CPU part). The wrapper adds about a microsecond a wait.
    """

    def __init__(self) -> None:
        import psycopg

        self.wall = self.cpu = 0.0
        self.count, self.on = 0, False
        self._original = original = psycopg.Connection.wait

        def wait(conn: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return original(conn, *args, **kwargs)
            t, c = time.perf_counter(), time.thread_time()
            try:
                return original(conn, *args, **kwargs)
            finally:
                self.wall, self.cpu, self.count = self.wall + time.perf_counter() - t, self.cpu + time.thread_time() - c, self.count + 1

        psycopg.Connection.wait = wait  # for this run only: close() restores it

    def __enter__(self) -> None:
        self.on = True

    def __exit__(self, *_exc: object) -> None:
        self.on = False

    def close(self) -> None:
        """Put psycopg's own method back."""
        import psycopg

        psycopg.Connection.wait = self._original


class RawCeiling:
    """The raw work for one message at a time: stdlib parse, AES-GCM of body and requester, one INSERT, one commit."""

    def __init__(self, url: str) -> None:
        import psycopg
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        self.conn.execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, message_id text UNIQUE, requester bytea, body bytea, raw bytea)")
        self.conn.commit()
        self.count = 0

    def take(self, raw: bytes) -> None:
        """One message, committed."""
        import email
        import email.policy

        aead, self.count = self.aead, self.count + 1
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain", "html")) if not msg.is_multipart() or msg.get_content_maintype() == "multipart" else msg
        body = part.get_content() if part is not None else ""
        requester = str(msg.get("From", ""))
        self.conn.execute(
            "INSERT INTO bench_raw (message_id, requester, body, raw) VALUES (%s, %b, %b, %b)",
            (f"{self.count}-{msg.get('Message-ID', '')}", os.urandom(12) + aead.encrypt(os.urandom(12), requester.encode(), None),
             aead.encrypt(os.urandom(12), str(body).encode(errors="replace"), None), aead.encrypt(os.urandom(12), raw, None)),
        )  # fmt: skip
        self.conn.commit()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _desk_app(url: str, instance: str) -> Any:
    """The desk's app on `url`, as the bench runs it (the bench's secrets, two addresses)."""
    from app import create_app
    from config.settings import config_from_env

    env = {
        "DATABASE_URL": url, "SECRET_KEY": "bench-" * 8, "MASTER_SECRET": "bench-master-" * 4, "DESK_INSTANCE_PATH": instance,
        "PRIVACY_ADDRESS": "privacy@desk.localhost", "SUPPORT_ADDRESS": "support@desk.localhost",
    }  # fmt: skip
    return create_app(config_from_env(env))


def capture_written(url: str, corpus: list[bytes]) -> tuple[dict[str, int], list[Written], list[str], tuple[int, float, float]]:
    """In a process of its own (spawned: nothing warmed in the timed one), the corpus through the desk on `url`, a copy of
    the timed desk's database: each message's outcome, the rows it wrote (`RowCapture`) for the per-row ceiling, the
    texts the desk sent (its cursor executions) and its waits on Postgres (`ServerWaits`: count, wall s, CPU s). Counted
    here, not in the timed run: a listener and a wrapper on every statement are the bench's work, not the desk's."""
    from sqlalchemy import event

    from app.db import utcnow
    from app.extensions import db
    from app.mail.inbound import IngestSettings, ingest_committed
    from app.principal import Principal

    outcomes: Counter[str] = Counter()
    written = []
    with tempfile.TemporaryDirectory() as instance:
        app = _desk_app(url, instance)
        by = Principal.system("bench ingest")
        with app.app_context():
            settings = IngestSettings.from_config(app.config)
            capture, waiting, sent = RowCapture(libpq_url(url)), ServerWaits(), []
            assert db.engine is not None
            event.listen(db.engine, "before_cursor_execute", lambda _c, _k, statement, *_a: sent.append(statement))
            for raw in corpus:
                capture.mark()
                with waiting:
                    outcomes[ingest_committed(db.session_scope, raw, settings=settings, by=by, clock=utcnow, source="pipe").status] += 1
                written.append(capture.written())
            capture.close()
            waiting.close()
            db.engine.dispose()
    return dict(outcomes), written, sent, (waiting.count, waiting.wall, waiting.cpu)


def run_desk(url: str, corpus: list[bytes], plain: list[bytes], controllers: int, ceiling_url: str, *, pipelined: bool = False) -> dict[str, float]:
    """The corpus through `ingest_committed` on a fresh desk with `controllers` controllers; rate, statements and latency.

    The raw ceiling runs on `ceiling_url` interleaved with the desk, message by message (one ceiling message,
    then the same message through the desk, each timed on its own), so both see the same load at the same
    moment on a shared machine.
    """
    from sqlalchemy import event, make_url

    from app import migrations as desk_migrations
    from app.controllers.service import ControllerInput, create_controller
    from app.db import utcnow
    from app.extensions import db
    from app.mail.inbound import IngestSettings, ingest_committed
    from app.principal import Principal
    from config.settings import normalise_database_url
    from tests.databases import server_database

    with tempfile.TemporaryDirectory() as instance:
        desk_migrations.upgrade(url)
        app = _desk_app(url, instance)
        by = Principal.system("bench ingest")
        with app.app_context():
            with db.session_scope() as session:
                for name, domain, identifier in CONTROLLERS:
                    data = ControllerInput(name=name, dsr_contacts=[f"dpo@{domain}"], domains=[domain], identifiers=[identifier])
                    create_controller(session, data, by=by, now=utcnow())
                for n in range(controllers - len(CONTROLLERS)):
                    filler = f"filler{n}.example"
                    data = ControllerInput(name=f"Filler {n}", dsr_contacts=[f"dpo@{filler}"], domains=[filler], identifiers=[f"FL-{n:05d}"])
                    create_controller(session, data, by=by, now=utcnow())
            # Statistics, as autovacuum gathers them within a minute of such a load on any running desk: without them
            # Postgres plans the lookups across 1,000 controllers as if the table they just filled were empty (a nested
            # loop of 1,000 index scans: 4-6 ms a request for the index keys' check alone, 1.7 ms with them).
            with db.state(app).engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
            settings = IngestSettings.from_config(app.config)
            # The per-row ceiling's rows (a copy of the desk's database as it is now, taken in a process of its own) and
            # database (another copy: schema, controllers, keys, statistics).
            db.engine.dispose()
            admin, template = normalise_database_url(ADMIN_URL, variable="BENCH_DATABASE_URL"), make_url(url).database
            with server_database(admin, f"{template}_capture", template=template) as capture_url:
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    captured_outcomes, captured, statements, waits = pool.submit(capture_written, capture_url, corpus).result()
            copies = contextlib.ExitStack()
            rows_url = copies.enter_context(server_database(admin, f"{template}_rows", template=template))
            rows_work = RowCeiling(libpq_url(rows_url), pipelined=pipelined)
            plans = rows_work.plan([as_parameters(w) for w in captured])
            outcomes: Counter[str] = Counter()
            latencies = []
            # The statements of the mix were counted in the capture run; those of the plain messages after the timed
            # loop. Each text is named by shape afterwards (statement_shape walks every character).
            plain_sent: list[str] = []
            assert db.engine is not None

            def count_statement(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
                plain_sent.append(statement)

            raw_work = RawCeiling(ceiling_url)
            elapsed = ceiling_elapsed = rows_elapsed = cpu = 0.0
            # BENCH_PROFILE=<path>: cProfile the desk's work on the mix into <path>.<controllers> (slows the desk).
            profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
            for raw, plan in zip(corpus, plans, strict=True):
                t0 = time.perf_counter()
                raw_work.take(raw)
                t1, c1 = time.perf_counter(), time.process_time()
                if profiler is not None:
                    profiler.enable()
                outcome = ingest_committed(db.session_scope, raw, settings=settings, by=by, clock=utcnow, source="pipe")
                if profiler is not None:
                    profiler.disable()
                t2, c2 = time.perf_counter(), time.process_time()
                rows_work.take(raw, plan)
                rows_elapsed += time.perf_counter() - t2
                latencies.append(t2 - t1)
                ceiling_elapsed, elapsed, cpu = ceiling_elapsed + (t1 - t0), elapsed + (t2 - t1), cpu + (c2 - c1)
                outcomes[outcome.status] += 1
            raw_work.close()
            rows_work.close()
            copies.close()
            if profiler is not None:
                profiler.dump_stats(f"{os.environ['BENCH_PROFILE']}.{controllers}")
            ceiling = len(corpus) / ceiling_elapsed
            row_ceiling = len(corpus) / rows_elapsed
            rows_per_message = (rows_work.inserts / len(corpus), rows_work.updates / len(corpus))
            shapes_of_mix = Counter(statement_shape(s) for sent in statements for s in sql_statements(sent))
            mix_statements, mix_trips = sum(shapes_of_mix.values()), len(statements)
            event.listen(db.engine, "before_cursor_execute", count_statement)
            plain_started = time.perf_counter()
            for raw in plain:
                ingest_committed(db.session_scope, raw, settings=settings, by=by, clock=utcnow, source="pipe")
            plain_elapsed = time.perf_counter() - plain_started
            plain_shapes = Counter(statement_shape(s) for sent in plain_sent for s in sql_statements(sent))
            plain_trips = len(plain_sent)
            event.remove(db.engine, "before_cursor_execute", count_statement)
            db.engine.dispose()
    latencies.sort()
    print(f"  {controllers} controllers: outcomes {dict(outcomes)}")
    if captured_outcomes != dict(outcomes):
        print(f"  (the capture run's outcomes differed: {captured_outcomes}; the per-row ceiling wrote that run's rows)")
    print(f"  SQL statements over the mix: {mix_statements / len(corpus):.1f} a message in {mix_trips / len(corpus):.1f} round trips; most frequent:")
    for shape, n in shapes_of_mix.most_common(12):
        print(f"    {n / len(corpus):5.1f} a message  {shape}")
    per_plain = f"{sum(plain_shapes.values()) / len(plain):.1f} statements in {plain_trips / len(plain):.1f} round trips"
    print(f"  a plain message ({len(plain)} new text/plain questions to the support address): {per_plain}:")
    for shape, n in plain_shapes.most_common(30):
        print(f"    {n / len(plain):5.2f}  {shape}")
    print(
        f"  per-row ceiling interleaved (issue 11's: stdlib parse, AES-GCM body and requester, one INSERT per row the desk stored, "
        f"one commit a message{'; PIPELINED, a variant' if pipelined else ''}): {row_ceiling:.1f} messages/s; "
        f"{rows_per_message[0]:.1f} INSERTs and {rows_per_message[1]:.1f} UPDATEs a message"
    )
    print(f"  one-row ceiling interleaved (the same parse and encryption, the whole message as one row, one commit): {ceiling:.1f} messages/s")
    print(
        f"  in the capture run the desk waited on Postgres {waits[0] / len(corpus):.1f} times a message (BEGIN and COMMIT "
        f"included): {waits[1] / len(corpus) * 1000:.2f} ms a message, of which {waits[2] / len(corpus) * 1000:.2f} ms its own CPU "
        f"(sending, receiving). In the timed run a message took the desk {elapsed / len(corpus) * 1000:.2f} ms, the per-row ceiling "
        f"{rows_elapsed / len(corpus) * 1000:.2f} ms, the one-row ceiling {ceiling_elapsed / len(corpus) * 1000:.2f} ms"
    )
    return {
        "ceiling": ceiling,
        "row_ceiling": row_ceiling,
        "rate": len(corpus) / elapsed,
        "plain_rate": len(plain) / plain_elapsed,
        "cpu_ms": cpu / len(corpus) * 1000,
        "statements": mix_statements / len(corpus),
        "plain_statements": sum(plain_shapes.values()) / len(plain),
        "plain_trips": plain_trips / len(plain),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--controllers", type=int, nargs="+", default=[5, 1000], help="desk sizes to run (default: 5 and 1000)")
    parser.add_argument(
        "--pipelined-ceiling", action="store_true", help="send the per-row ceiling's statements in psycopg's pipeline mode (a variant for the record)"
    )
    args = parser.parse_args()

    corpus = generate(args.messages, args.seed)
    plain = plain_corpus(PLAIN_MESSAGES, args.seed)
    print(f"corpus: {len(corpus)} messages, {sum(map(len, corpus)) / 1e6:.1f} MB; load average {os.getloadavg()[0]:.1f} at the start")
    results = {}
    for size in args.controllers:
        with fresh_postgres(f"ingest_{size}") as url, fresh_postgres(f"ingest_raw_{size}") as ceiling_url:
            results[size] = run_desk(url, corpus, plain, size, ceiling_url, pipelined=args.pipelined_ceiling)
    columns = [
        "controllers",
        "per-row ceiling messages/s",
        "one-row ceiling messages/s",
        "desk messages/s",
        "x per-row ceiling",
        "x one-row ceiling",
        "statements/message (mix)",
        "statements (plain message)",
        "round trips (plain)",
    ]
    print("\n| " + " | ".join([*columns, "CPU ms/message", "p50 ms", "p99 ms"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, r in results.items():
        print(
            f"| {size} | {r['row_ceiling']:.1f} | {r['ceiling']:.1f} | {r['rate']:.1f} | {r['rate'] / r['row_ceiling']:.2f} | "
            f"{r['rate'] / r['ceiling']:.2f} | {r['statements']:.1f} | "
            f"{r['plain_statements']:.1f} | {r['plain_trips']:.1f} | "
            f"{r['cpu_ms']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        )
    sizes = sorted(results)
    if len(sizes) > 1:
        small, large = results[sizes[0]], results[sizes[-1]]
        print(f"rate at {sizes[-1]} controllers / rate at {sizes[0]}: {large['rate'] / small['rate']:.2f}")
        print(f"the same, each rate over its interleaved one-row ceiling: {(large['rate'] / large['ceiling']) / (small['rate'] / small['ceiling']):.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (the machine is shared: compare the ratio, not the absolute rate)")


if __name__ == "__main__":
    main()
