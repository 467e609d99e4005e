"""A real IMAP server for the tests: Debian's dovecot on loopback, own config and TLS certificate in a temp dir."""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.loopback import free_port, make_certificates

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "desk", "imap-test-password"


@dataclass(frozen=True)
class Dovecot:
    """Where the test server listens and how to trust it."""

    imaps_port: int
    imap_port: int
    ca_file: str

    def url(self, *, starttls: bool = False, processed: str = "Processed") -> str:
        """IMAP_URL for this server."""
        if starttls:
            return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.imap_port}/INBOX?processed={processed}"
        return f"imaps://{USER}:{PASSWORD}@127.0.0.1:{self.imaps_port}/INBOX?processed={processed}"

    def client(self) -> imaplib.IMAP4_SSL:
        """A logged-in client (to put messages in and look at folders)."""
        conn = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=ssl.create_default_context(cafile=self.ca_file))
        conn.login(USER, PASSWORD)
        return conn

    def append(self, raw: bytes, mailbox: str = "INBOX") -> None:
        """Deliver a message into a mailbox."""
        conn = self.client()
        try:
            typ, _ = conn.append(mailbox, None, None, raw)
            assert typ == "OK"
        finally:
            conn.logout()

    def count(self, mailbox: str) -> int:
        """How many messages a mailbox holds (0 when it does not exist)."""
        conn = self.client()
        try:
            typ, data = conn.select(mailbox, readonly=True)
            return int(data[0] or 0) if typ == "OK" else 0
        finally:
            conn.logout()


CONFIG = """
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
mail_location = maildir:~/Maildir
default_internal_user = {user}
default_login_user = {user}
default_internal_group = {group}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


@contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    """Start dovecot in the foreground on two free loopback ports; stop it (by its pid) afterwards."""
    root = Path(tempfile.mkdtemp(prefix="desk-dovecot-"))
    os.chmod(root, 0o755)  # the mail processes run unprivileged
    (root / "mail").mkdir(mode=0o777)
    os.chmod(root / "mail", 0o777)
    ca_file, cert, key = make_certificates(root)
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    user, group = ("nobody", "nogroup") if os.geteuid() == 0 else (os.environ.get("USER", "nobody"), "nogroup")
    imap_port, imaps_port = free_port(), free_port()
    config = root / "dovecot.conf"
    config.write_text(CONFIG.format(root=root, cert=cert, key=key, uid=user, gid=group, user=user, group=group, imap_port=imap_port, imaps_port=imaps_port))
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", imaps_port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                    raise RuntimeError(f"dovecot did not start: {output} {log}") from None
                time.sleep(0.1)
        yield Dovecot(imaps_port=imaps_port, imap_port=imap_port, ca_file=str(ca_file))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        shutil.rmtree(root, ignore_errors=True)
