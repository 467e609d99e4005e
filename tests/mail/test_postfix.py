"""A real Postfix delivering to the desk over LMTP and over the pipe (issue 15 item 8), as docs/operations.md configures it.

One Postfix instance of the test's own (Debian's package, `postfix -c DIR`,
loopback only, nothing relayed out: `default_transport = error`) takes mail
for two desks, one per path: `lmtp.desk.example.net` goes to a running
`flask --app wsgi mail lmtp` process, `pipe.desk.example.net` to the `pipe`
transport and the documented wrapper (`mail ingest --recipient ${recipient}`).
The desk's lines are read from the document (tests/mail/postfix.py), so what
the document says is what runs here. Messages go in over SMTP, as a sender's
server hands them over; the test looks where an operator would: the mail log
(`status=sent`/`deferred`, nothing bounced), `postqueue -j`, and the desk's
tickets and requests.

The desks run in production mode, so their addresses are under example.net
(production refuses special-use domains such as .localhost; nothing is sent
anywhere). A database outage over LMTP is the listener started against a
database that does not answer (451 per recipient), then restarted against its
database and the queue flushed; over the pipe the environment file is broken
(no `MASTER_SECRET`: exit 78), then points at a database that does not answer
(exit 75), then is fixed. Both outages are one test, so that a listener's
start overlaps a pipe run: each Python start is seconds on a loaded machine,
and the module runs in both CI runs (the desk's side differs per database).
The listener and the pipe run as an unprivileged user (created when missing),
as Postfix insists for the pipe, with a stand-in venv when this checkout's
interpreter is not runnable by that user (tests/mail/postfix.py, venv_for).

Needs root and Debian's postfix (`scripts/ci-postfix` installs it); without
either it skips, except under CI, where it fails.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import create_app
from app.dsr.models import Dsr
from app.extensions import db
from app.jobs.broker import app_context
from app.mail.quarantine import QuarantinedMessage
from app.tickets.lookup import find_by_message_ids
from app.tickets.models import Message, Ticket
from config.settings import REPO_ROOT
from tests.conftest import TEST_MASTER_SECRET, make_config
from tests.databases import migrated_database
from tests.loopback import free_port
from tests.mail import postfix as pf
from tests.mail.conftest import build

LMTP_DOMAIN = "lmtp.desk.example.net"
PIPE_DOMAIN = "pipe.desk.example.net"
REQUEST = "Under Article 15 GDPR I request access to all personal data you hold about me. Please also erase my data."
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


def _missing_part() -> str | None:
    if not pf.installed():
        return "Debian's postfix is not installed (scripts/ci-postfix installs it)"
    if os.geteuid() != 0:
        return "a Postfix instance of the test's own needs root"
    return None


@pytest.fixture(scope="module", autouse=True)
def _postfix_present() -> None:
    missing = _missing_part()
    if missing and os.environ.get("CI"):
        pytest.fail(f"{missing}; required under CI")
    if missing:
        pytest.skip(missing)


@dataclass
class Desk:
    """One desk behind the Postfix: its domain, database, environment file (the units' and the wrapper's)."""

    domain: str
    database: str
    folder: Path
    env_file: Path
    user: pwd.struct_passwd
    reader: Flask | None = None

    def address(self, local: str) -> str:
        return f"{local}@{self.domain}"

    def env(self, **changes: str | None) -> dict[str, str]:
        """The environment file's settings, as an operator writes them."""
        env = {
            "DESK_ENV": "production",
            # Read literally by systemd and by the wrapper alike (a `. file` wrapper would expand `$`, background at `&`)
            "SECRET_KEY": "k" * 36 + "$x&y",
            "RETENTION_RUN_AT": "30 3 * * *",
            "MASTER_SECRET": TEST_MASTER_SECRET,
            "DATABASE_URL": self.database,
            "DESK_INSTANCE_PATH": str(self.folder),
            "PRIVACY_ADDRESS": self.address("privacy"),
            "SUPPORT_ADDRESS": self.address("support"),
            "MAIL_PIPE_LOG": str(self.folder / "pipe.log"),
        }
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def write_env(self, **changes: str | None) -> None:
        """(Re)write the environment file: mode 0640, owner root, the desk's group."""
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env(**changes).items()))
        os.chown(self.env_file, 0, self.user.pw_gid)
        self.env_file.chmod(0o640)

    def counts(self) -> tuple[int, int, int]:
        """(tickets, inbound messages, requests) in the desk's database."""
        with self.reading() as session:
            return (
                int(session.scalar(select(func.count()).select_from(Ticket)) or 0),
                int(session.scalar(select(func.count()).select_from(Message).where(Message.direction == "inbound")) or 0),
                int(session.scalar(select(func.count()).select_from(Dsr)) or 0),
            )

    def held(self) -> int:
        """How many messages the desk holds in quarantine."""
        with self.reading() as session:
            return int(session.scalar(select(func.count()).select_from(QuarantinedMessage)) or 0)

    def look(self, message_id: str) -> tuple[int | None, int]:
        """(the ticket holding the message, how many requests that ticket has); (None, 0) when it is not stored."""
        with self.reading() as session:
            ticket = find_by_message_ids(session, [message_id])
            if ticket is None:
                return None, 0
            return ticket.id, int(session.scalar(select(func.count()).select_from(Dsr).where(Dsr.ticket_id == ticket.id)) or 0)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session on the desk's database (its keys from the same MASTER_SECRET), closed afterwards."""
        assert self.reader is not None
        try:
            with self.reader.app_context(), db.session_scope() as session:
                yield session
        finally:
            db.state(self.reader).engine.dispose()
            # Reading as root may leave SQLite's -wal/-shm behind as root's: give them back to the desk's user.
            pf.chown_tree(self.folder, self.user)


@dataclass
class Site:
    postfix: pf.Postfix
    lmtp: Desk
    pipe: Desk
    root: Path
    venv: Path
    doc: pf.DocConfig
    lmtp_port: int
    listener: subprocess.Popen[bytes] | None = field(default=None)

    def spawn_listener(self, **changes: str | None) -> None:
        """Start the LMTP unit's ExecStart from the document as the desk's user, with its environment file (plus `changes`)."""
        command = shlex.split(subst(self.doc.lmtp_command, self))
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", **self.lmtp.env(**changes)}
        user = self.lmtp.user
        with (self.root / "lmtp.log").open("ab") as log:
            self.listener = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, user=user.pw_uid, group=user.pw_gid, extra_groups=[], stdout=log, stderr=subprocess.STDOUT
            )

    def wait_listener(self) -> None:
        """Until the listener takes connections (AssertionError with its output if it exits or takes over 60 s)."""
        assert self.listener is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.lmtp_port), timeout=1).close()
                return
            except OSError:
                if self.listener.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"mail lmtp did not start: {(self.root / 'lmtp.log').read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.1)

    def restart_listener(self, **changes: str | None) -> None:
        self.stop_listener()
        self.spawn_listener(**changes)
        self.wait_listener()

    def stop_listener(self) -> None:
        if self.listener is None:
            return
        self.listener.send_signal(signal.SIGTERM)
        try:
            self.listener.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.listener.kill()
            self.listener.wait()
        self.listener = None


def subst(text: str, site: Site, domain: str = LMTP_DOMAIN) -> str:
    """The document's names for this site: /etc/postfix, the domain, the port, the user, the wrapper and env file, /srv/desk."""
    return (
        text.replace("/etc/postfix/", f"{site.root}/conf/")
        .replace("desk.example", domain)
        .replace("127.0.0.1:2424", f"127.0.0.1:{site.lmtp_port}")
        .replace("user=desk ", f"user={pf.DESK_USER} ")
        .replace("/usr/local/bin/dsr-desk-ingest", str(site.root / "dsr-desk-ingest"))
        .replace("/etc/dsr-desk/env", str(site.pipe.env_file))
        .replace("/srv/desk/.venv", str(site.venv))
        .replace("/srv/desk", str(REPO_ROOT))
    )


def _desk(stack: ExitStack, root: Path, name: str, domain: str, user: pwd.struct_passwd) -> Desk:
    """A desk's folder (the desk's user's), its database at the migration head, its environment file, a reader app."""
    folder = root / name
    folder.mkdir(mode=0o700)
    url = stack.enter_context(migrated_database(folder, name.replace("-", "_")))
    pf.chown_tree(folder, user)
    desk = Desk(domain=domain, database=url, folder=folder, env_file=root / f"{name}.env", user=user)
    desk.write_env()
    desk.reader = create_app(make_config(url, root / f"{name}-reader"))
    stack.callback(lambda: db.state(desk.reader).engine.dispose())
    return desk


@pytest.fixture(scope="module")
def site(app: Flask) -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="desk-postfix-"))
    root.chmod(0o755)  # the desk's user reaches the wrapper, its folder and the environment file through it
    try:
        with ExitStack() as stack:
            # The suite's app gets the process-wide app-context middleware back (create_app took it for the readers).
            stack.callback(app_context.attach, app)
            user = pf.desk_user()
            venv = pf.venv_for(user, root)
            doc = pf.doc_config()
            lmtp, pipe = _desk(stack, root, "desk-lmtp", LMTP_DOMAIN, user), _desk(stack, root, "desk-pipe", PIPE_DOMAIN, user)
            site = Site(postfix=pf.Postfix(root, 0), lmtp=lmtp, pipe=pipe, root=root, venv=venv, doc=doc, lmtp_port=free_port())
            # The listener takes seconds to start: it does while Postfix is set up.
            site.spawn_listener()
            stack.callback(site.stop_listener)
            wrapper = root / "dsr-desk-ingest"
            wrapper.write_text(subst(doc.wrapper, site, PIPE_DOMAIN))
            os.chown(wrapper, 0, user.pw_gid)
            wrapper.chmod(0o750)
            main_cf = subst(doc.main_cf, site, f"{LMTP_DOMAIN}, {PIPE_DOMAIN}") + subst(doc.pipe_main_cf, site)
            maps = {
                "desk_recipients": subst(doc.recipients, site, LMTP_DOMAIN) + subst(doc.recipients, site, PIPE_DOMAIN),
                "transport": subst(doc.lmtp_transport, site, LMTP_DOMAIN) + subst(doc.pipe_transport, site, PIPE_DOMAIN),
            }
            master_cf = subst(doc.pipe_master_cf, site, PIPE_DOMAIN)
            site.postfix = stack.enter_context(pf.running_postfix(root, main_cf=main_cf, master_cf=master_cf, maps=maps))
            site.wait_listener()
            yield site
    finally:
        pf.rmtree(root)


def plain(desk: Desk, message_id: str) -> bytes:
    return build(to=desk.address("support"), subject="Invoice 2026-114", body="The invoice total looks wrong to me.", message_id=message_id)


def request(desk: Desk, message_id: str, to: str = "privacy") -> bytes:
    return build(to=desk.address(to), subject="My data: access and erasure", body=REQUEST, message_id=message_id)


def plus(before: tuple[int, int, int], after: tuple[int, int, int]) -> tuple[int, ...]:
    return tuple(b - a for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("path", ["lmtp", "pipe"])
def test_plain_mail_is_a_ticket_a_request_opens_a_dsr_a_bcc_to_privacy_opens_one_and_a_forgery_is_held(site: Site, path: str) -> None:
    desk = site.lmtp if path == "lmtp" else site.pipe
    before, held = desk.counts(), desk.held()
    ids = {name: f"<pf-{name}-{path}@example.org>" for name in ("plain", "request", "bcc", "forged")}
    # Four senders' servers hand their messages over at once; the Bcc is in no header, only the envelope names privacy@;
    # the forgery claims to come from the desk's own address (quarantined: a bounce would go to whoever forged it).
    forged = build(sender=f"DSR Desk <{desk.address('privacy')}>", to=desk.address("support"), subject="Re: your ticket", message_id=ids["forged"])
    queued = {
        "plain": site.postfix.send(plain(desk, ids["plain"]), [desk.address("support")]),
        "request": site.postfix.send(request(desk, ids["request"]), [desk.address("privacy")]),
        "bcc": site.postfix.send(request(desk, ids["bcc"], to="support"), [desk.address("support"), desk.address("privacy")]),
        "forged": site.postfix.send(forged, [desk.address("support")], sender="mallory@example.com"),
    }
    for queue_id in queued.values():
        site.postfix.wait_removed(queue_id)
    statuses = {name: site.postfix.statuses(queue_id) for name, queue_id in queued.items()}
    assert [len(s) for s in statuses.values()] == [1, 1, 2, 1] and all(" sent " in s for group in statuses.values() for s in group), statuses
    # The desk's answer per recipient as the mail log shows it: the listener's reply, or the pipe's status line.
    if path == "lmtp":
        said, held_said = r"250 2\.0\.0 (stored|duplicate) \(ticket \d+\)", r"250 2\.0\.0 accepted \(held \d+\)"
    else:
        said = r"delivered via dsrdesk service \((stored|duplicate): ticket \d+"
        held_said = r"delivered via dsrdesk service \(quarantined \d+: from_own_address\)"
    assert [re.findall(said, s) for s in statuses["plain"]] == [["stored"]], statuses
    assert sorted(w for s in statuses["bcc"] for w in re.findall(said, s)) == ["duplicate", "stored"], statuses
    assert re.search(held_said, statuses["forged"][0]), statuses
    found = {name: desk.look(message_id) for name, message_id in ids.items()}
    assert found["forged"] == (None, 0) and all(ticket is not None for name, (ticket, _) in found.items() if name != "forged"), found
    assert {name: dsrs for name, (_, dsrs) in found.items()} == {"plain": 0, "request": 1, "bcc": 1, "forged": 0}
    assert plus(before, desk.counts()) == (3, 3, 2) and desk.held() == held + 1
    assert site.postfix.bounces() == [] and site.postfix.problems() == []
    # What the desk logged (the listener's output, the journal in production; MAIL_PIPE_LOG) names no sender.
    logged = (site.root / "lmtp.log") if path == "lmtp" else (desk.folder / "pipe.log")
    assert logged.exists() and "jane.roe" not in logged.read_text(errors="replace") and "mallory" not in logged.read_text(errors="replace")


def test_outages_defer_on_both_paths_and_each_message_is_delivered_once_after_the_fix(site: Site) -> None:
    # Both paths at once, so the slow parts (a listener's start, a pipe run) overlap.
    lmtp, pipe = site.lmtp, site.pipe
    before = lmtp.counts(), pipe.counts()
    lmtp_id, pipe_id = "<pf-outage-lmtp@example.org>", "<pf-outage-pipe@example.org>"
    try:
        # Given the pipe's environment file lacks MASTER_SECRET (exit 78) and the listener's database does not answer (451)
        pipe.write_env(MASTER_SECRET=None)
        pipe_q = site.postfix.send(request(pipe, pipe_id), [pipe.address("privacy")])
        site.restart_listener(DATABASE_URL=UNREACHABLE)
        lmtp_q = site.postfix.send(request(lmtp, lmtp_id, to="support"), [lmtp.address("support"), lmtp.address("privacy")])
        # Then both wait in the deferred queue, for every recipient
        site.postfix.wait_attempts(lmtp_q, 2)
        assert len(site.postfix.wait_deferred(lmtp_q)["recipients"]) == 2  # type: ignore[arg-type]
        site.postfix.wait_attempts(pipe_q, 1)
        site.postfix.wait_deferred(pipe_q)
        # When the pipe's database does not answer either (exit 75) and the queue is flushed
        pipe.write_env(DATABASE_URL=UNREACHABLE)
        site.postfix.flush()
        site.postfix.wait_attempts(lmtp_q, 4)
        # (and meanwhile the listener is restarted with its database back, as its unit would be)
        site.stop_listener()
        site.spawn_listener()
        site.postfix.wait_attempts(pipe_q, 2)
        site.postfix.wait_deferred(pipe_q)
        site.postfix.wait_deferred(lmtp_q)
        lmtp_said, pipe_said = site.postfix.statuses(lmtp_q), site.postfix.statuses(pipe_q)
        assert all(" deferred " in s and "451 4.3.0" in s for s in lmtp_said), lmtp_said
        # EX_CONFIG, then EX_TEMPFAIL, as Postfix reports them; the reply is the desk's fixed line, nothing internal.
        assert [s.split()[1] for s in pipe_said] == ["dsn=4.3.5", "dsn=4.3.0"] and all(" deferred " in s for s in pipe_said), pipe_said
        assert "MASTER_SECRET" not in "\n".join(pipe_said)
        assert (lmtp.counts(), pipe.counts()) == before
    finally:
        pipe.write_env()
    # When the operator has fixed the environment file and flushes the queue
    site.wait_listener()
    site.postfix.flush()
    site.postfix.wait_removed(lmtp_q)
    site.postfix.wait_removed(pipe_q)
    # Then each is delivered once: one ticket and one request per message, and nothing went back to the sender
    for said, recipients in ((site.postfix.statuses(lmtp_q), 2), (site.postfix.statuses(pipe_q), 1)):
        tried, last = said[:-recipients], said[-recipients:]
        assert all(" sent " in s for s in last) and all(" deferred " in s for s in tried), said
    assert lmtp.look(lmtp_id)[1] == 1 and pipe.look(pipe_id)[1] == 1
    assert plus(before[0], lmtp.counts()) == (1, 1, 1) and plus(before[1], pipe.counts()) == (1, 1, 1)
    assert site.postfix.queue() == []
    assert site.postfix.bounces() == [] and site.postfix.problems() == []
