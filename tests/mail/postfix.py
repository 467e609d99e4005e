"""A real Postfix for the tests: Debian's package, an instance of its own from a temporary directory, loopback only.

The desk's lines (main.cf, master.cf, the maps, the pipe wrapper, the LMTP
command) are read from docs/operations.md, "Inbound mail (Postfix)", so the
document is what the test runs; the instance adds only what a host has anyway
(its own queue and data directories, a log file, an SMTP port on 127.0.0.1).
Needs root: Postfix's master runs as root and the pipe runs as another user.
`scripts/ci-postfix` installs the package.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from config.settings import REPO_ROOT

POSTFIX = Path("/usr/sbin/postfix")
POSTQUEUE = Path("/usr/sbin/postqueue")
POSTMAP = Path("/usr/sbin/postmap")
SYSTEM_PYTHON = Path("/usr/bin/python3")
DOC = REPO_ROOT / "docs" / "operations.md"
# The user the pipe and the LMTP listener run as (Postfix refuses to run a pipe as root).
DESK_USER = "dsr-desk-test"
# Postfix's cleanup service on a file system whose time stamps run ahead of the system clock (see Postfix.problems).
CLOCK_SKEW = re.compile(r" postfix/cleanup\[\d+\]: warning: (file system clock is \d+ seconds? ahead of local clock|resetting file time stamps)")


def installed() -> bool:
    """Whether Debian's postfix package (the commands this module runs) is on this machine."""
    return all(p.exists() for p in (POSTFIX, POSTQUEUE, POSTMAP))


@dataclass(frozen=True)
class DocConfig:
    """The desk's Postfix configuration as docs/operations.md gives it, per path, before the site's names are put in."""

    main_cf: str
    recipients: str
    lmtp_transport: str
    lmtp_command: str
    pipe_master_cf: str
    pipe_main_cf: str
    pipe_transport: str
    wrapper: str


def _blocks(text: str) -> list[tuple[str, str]]:
    """(path, content) for each fenced block introduced by a paragraph starting with a `/path` in backticks, in order."""
    pattern = r"^`(/[^`\s]+)`(?:(?!```).)*?\n```[a-z]*\n(.*?)```"
    return [(m.group(1), m.group(2)) for m in re.finditer(pattern, text, re.S | re.M)]


def doc_config() -> DocConfig:
    """Read the "Inbound mail (Postfix)" section's blocks (AssertionError naming what is missing)."""
    text = DOC.read_text()
    section = re.search(r"^## Inbound mail \(Postfix\)\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, "docs/operations.md has no 'Inbound mail (Postfix)' section"
    lmtp_part, _, pipe_part = section.group(1).partition("### Pipe")
    assert pipe_part, "docs/operations.md: no '### Pipe' subsection under 'Inbound mail (Postfix)'"
    lmtp, pipe = dict(_blocks(lmtp_part)), dict(_blocks(pipe_part))

    def block(blocks: dict[str, str], part: str, path: str) -> str:
        assert path in blocks, f"docs/operations.md, 'Inbound mail (Postfix)', {part}: no block introduced by `{path}`"
        return blocks[path]

    exec_start = re.search(r"^ExecStart=(.*)$", block(lmtp, "LMTP", "/etc/systemd/system/dsr-desk-lmtp.service"), re.M)
    assert exec_start, "the LMTP unit has no ExecStart"
    return DocConfig(
        main_cf=block(lmtp, "LMTP", "/etc/postfix/main.cf"),
        recipients=block(lmtp, "LMTP", "/etc/postfix/desk_recipients"),
        lmtp_transport=block(lmtp, "LMTP", "/etc/postfix/transport"),
        lmtp_command=exec_start.group(1),
        pipe_master_cf=block(pipe, "Pipe", "/etc/postfix/master.cf"),
        pipe_main_cf=block(pipe, "Pipe", "/etc/postfix/main.cf"),
        pipe_transport=block(pipe, "Pipe", "/etc/postfix/transport"),
        wrapper=block(pipe, "Pipe", "/usr/local/bin/dsr-desk-ingest"),
    )


def desk_user() -> pwd.struct_passwd:
    """The unprivileged user of the test site, created (a system user without a home) when missing."""
    try:
        return pwd.getpwnam(DESK_USER)
    except KeyError:
        made = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", DESK_USER],
            capture_output=True,
            text=True,
        )
    try:
        return pwd.getpwnam(DESK_USER)  # made now, or by a test run in parallel (useradd then says it exists)
    except KeyError:
        raise AssertionError(f"useradd {DESK_USER} failed: {made.stderr.strip()}") from None


def _runs_as(user: pwd.struct_passwd, python: Path) -> bool:
    """Whether `user` can run `python` in the checkout and import the packages and the desk's settings."""
    command = [str(python), "-c", "import flask, config.settings"]
    try:
        result = subprocess.run(command, user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd=REPO_ROOT, capture_output=True, timeout=60)
    except PermissionError:
        return False
    return result.returncode == 0


def venv_for(user: pwd.struct_passwd, folder: Path) -> Path:
    """A virtualenv `user` can run with this checkout's packages: the running one, or a stand-in built from /usr/bin/python3.

    The operations document says to build the desk's venv from the system's python3 so the desk user can
    run it; this checkout's venv may not be (a Python under /root, as pyenv makes it). The stand-in is a
    venv of /usr/bin/python3 (same minor version) whose one .pth file adds this venv's site-packages, and a
    `bin/flask` like pip's.
    """
    venv = Path(sys.prefix)
    if _runs_as(user, venv / "bin" / "python"):
        return venv
    wanted = f"{sys.version_info.major}.{sys.version_info.minor}"
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True)
    assert probe.stdout.strip() == wanted, (
        f"the user {user.pw_name} cannot run {venv}/bin/python and {SYSTEM_PYTHON} is not Python {wanted}: build the venv from the system's python3"
    )
    stand_in = folder / "venv"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(stand_in)], check=True, capture_output=True)
    site = Path(sysconfig.get_paths(vars={"base": str(stand_in), "platbase": str(stand_in)})["purelib"])
    (site / "dsr-desk-checkout.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    flask = stand_in / "bin" / "flask"
    flask.write_text(f"#!{stand_in}/bin/python\nimport sys\nfrom flask.cli import main\nsys.exit(main())\n")
    flask.chmod(0o755)
    assert _runs_as(user, stand_in / "bin" / "python"), (
        f"the user {user.pw_name} cannot read this checkout ({REPO_ROOT}) or its packages ({sysconfig.get_paths()['purelib']}):"
        " every folder above them must be o+x"
    )
    return stand_in


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile reads them (comments and blank lines skipped)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


# What every Postfix host has in its main.cf anyway (Debian's default one, here in a directory of the test's own),
# and the test's: loopback only, its own queue, a log file to read.
INSTANCE_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.desk.localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
alias_maps =
alias_database =
smtputf8_enable = no
"""

# Debian's master.cf services, without chroot (the queue directory is a temporary one), SMTP on one loopback port.
INSTANCE_MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """One running instance: send to its SMTP port, read its log and queue, flush it."""

    def __init__(self, root: Path, smtp_port: int) -> None:
        self.root = root
        self.config_dir = root / "conf"
        self.smtp_port = smtp_port

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a Postfix command with `-c` this instance's configuration directory (check=True)."""
        tool, *rest = args
        return subprocess.run([tool, "-c", str(self.config_dir), *rest], check=True, capture_output=True, text=True, timeout=60)

    def send(self, raw: bytes, recipients: list[str], sender: str = "jane.roe@example.org") -> str:
        """Hand a message in over SMTP (envelope `recipients`); returns Postfix's queue id."""
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as client:
            client.ehlo("client.example.org")
            assert client.mail(sender)[0] == 250
            for recipient in recipients:
                code, text = client.rcpt(recipient)
                assert code == 250, (recipient, code, text)
            code, text = client.data(raw)
        assert code == 250, text
        found = re.search(rb"queued as ([0-9A-F]+)", text)
        assert found, text
        return found.group(1).decode()

    def log(self) -> str:
        """The instance's mail log so far."""
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def lines(self, queue_id: str) -> list[str]:
        """The log lines about one message."""
        return [line for line in self.log().splitlines() if f" {queue_id}: " in line]

    def statuses(self, queue_id: str) -> list[str]:
        """Each delivery attempt of one message in log order, as 'recipient dsn=X.Y.Z status (reply)'."""
        found = []
        for line in self.lines(queue_id):
            m = re.search(r"to=<([^>]*)>.* (dsn=\S+), status=(\S+) (.*)$", line)
            if m:
                found.append(" ".join(m.groups()))
        return found

    def wait_for(self, what: str, done: Callable[[], bool], timeout: float = 90) -> None:
        """Poll until `done()`; on timeout fail with the log's tail."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                tail = "\n".join(self.log().splitlines()[-40:])
                # The desks' own logs beside it (the listener's output, MAIL_PIPE_LOG): why a delivery was deferred.
                desks = "".join(
                    f"\n{path.relative_to(self.root)}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
                    for path in sorted(self.root.rglob("*.log"))
                )
                raise AssertionError(f"Postfix: timed out waiting for {what}; log:\n{tail}{desks}")
            time.sleep(0.1)

    def wait_removed(self, queue_id: str) -> None:
        """Until the message left the queue (every recipient delivered, bounced or expired)."""
        self.wait_for(f"{queue_id} to leave the queue", lambda: any(line.endswith(f"{queue_id}: removed") for line in self.lines(queue_id)))

    def wait_attempts(self, queue_id: str, count: int) -> None:
        """Until the log shows `count` delivery attempts (per recipient) of the message."""
        self.wait_for(f"{count} delivery attempts of {queue_id}", lambda: len(self.statuses(queue_id)) >= count)

    def wait_deferred(self, queue_id: str) -> dict[str, object]:
        """Until the message sits in the deferred queue (where `postqueue -f` finds it); returns its `postqueue -j` entry."""
        found: list[dict[str, object]] = []

        def deferred() -> bool:
            found[:] = [m for m in self.queue() if m["queue_id"] == queue_id and m["queue_name"] == "deferred"]
            return bool(found)

        self.wait_for(f"{queue_id} in the deferred queue", deferred)
        return found[0]

    def queue(self) -> list[dict[str, object]]:
        """`postqueue -j`: one JSON object per queued message."""
        out = self.command(str(POSTQUEUE), "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def flush(self) -> None:
        """`postqueue -f`: retry every deferred message now."""
        self.command(str(POSTQUEUE), "-f")

    def problems(self) -> list[str]:
        """Log lines of Postfix's warnings, errors and worse (a configuration it complains about, a crashed service).

        Not the cleanup service's clock-skew pair ('file system clock is N seconds ahead of local clock',
        'resetting file time stamps'): it compares the queue file's time stamp with the system clock, which
        says something about the machine's file system (seen once in CI, 1 second off), nothing about the
        desk or the configuration; the mail is queued and delivered as usual.
        """
        lines = [line for line in self.log().splitlines() if re.search(r": (warning|error|fatal|panic): ", line)]
        return [line for line in lines if not CLOCK_SKEW.search(line)]

    def bounces(self) -> list[str]:
        """Log lines of anything sent back or refused after acceptance: a notice to the sender (non-delivery, delay), a bounced recipient.

        Checked against a pipe that exits 1: 'status=bounced' and 'sender non-delivery notification' lines.
        """
        return [line for line in self.log().splitlines() if re.search(r"sender [a-z -]*notification: |status=bounced", line)]


@contextmanager
def running_postfix(root: Path, *, main_cf: str, master_cf: str, maps: dict[str, str]) -> Iterator[Postfix]:
    """Write conf/ (instance lines + `main_cf`, master.cf + `master_cf`, each of `maps` postmap'ed), start, stop afterwards."""
    from tests.loopback import free_port

    port = free_port()
    conf = root / "conf"
    conf.mkdir(mode=0o755)
    (root / "queue").mkdir(mode=0o755)
    (conf / "main.cf").write_text(INSTANCE_MAIN_CF.format(root=root) + main_cf)
    (conf / "master.cf").write_text(INSTANCE_MASTER_CF.format(smtp_port=port) + master_cf)
    for name, content in maps.items():
        (conf / name).write_text(content)
        subprocess.run([str(POSTMAP), "-c", str(conf), str(conf / name)], check=True, capture_output=True, text=True)
    postfix = Postfix(root, port)
    check = subprocess.run([str(POSTFIX), "-c", str(conf), "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    started = False
    try:
        postfix.command(str(POSTFIX), "start")
        started = True
        postfix.wait_for("the SMTP port", lambda: _listening(port), timeout=30)
        yield postfix
    finally:
        if started:
            subprocess.run([str(POSTFIX), "-c", str(conf), "stop"], capture_output=True, timeout=60)
            _wait_master_gone(root)


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _wait_master_gone(root: Path) -> None:
    pid_file = root / "queue" / "pid" / "master.pid"
    deadline = time.monotonic() + 30
    while pid_file.exists() and time.monotonic() < deadline:
        try:
            os.kill(int(pid_file.read_text().split()[0]), 0)
        except (ProcessLookupError, ValueError, IndexError):
            return
        time.sleep(0.1)


def group_of(user: pwd.struct_passwd) -> str:
    """The name of the user's primary group."""
    return grp.getgrgid(user.pw_gid).gr_name


def chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    """Give `path` and everything under it to `user`."""
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, d) for d in dirs), *(os.path.join(folder, f) for f in files)]:
            os.chown(name, user.pw_uid, user.pw_gid)


def rmtree(path: Path) -> None:
    """Remove a test site (the queue files belong to postfix; root may remove them)."""
    shutil.rmtree(path, ignore_errors=True)
