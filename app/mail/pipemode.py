"""`mail ingest` run by an MTA (a Postfix `pipe` transport): exit codes the MTA understands, nothing internal on stderr.

Postfix puts what a pipe command prints into the bounce or deferral text, and a
bounce goes to the sender (who may be forged). So in pipe mode the process logs
to syslog (facility mail), or to the file MAIL_PIPE_LOG names, never to stderr;
it prints one fixed status line on stdout. Anything that is not about the
message's content defers it: a configuration error exits EX_CONFIG (78) and
any other failure before the commit EX_TEMPFAIL (75); Postfix keeps the message
and retries. `wsgi.py` switches this on before the app is created, so errors in
the configuration are covered too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from logging.handlers import SysLogHandler

EX_TEMPFAIL = 75
EX_CONFIG = 78
SYSLOG_SOCKET = "/dev/log"


def fault_name(exc: BaseException) -> str:
    """The class of a temporary fault and, for a database error, the driver's code (`OperationalError/SQLITE_BUSY`).

    Safe to log: names and codes only, never the message, which may quote SQL parameters (personal data).
    """
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlite_errorname", None) or getattr(orig, "sqlstate", None)
    return f"{type(exc).__name__}/{code}" if code else type(exc).__name__


def invoked_as_pipe(argv: Sequence[str]) -> bool:
    """Whether this process runs `... mail ingest` (the words in that order on the command line)."""
    args = list(argv[1:])
    return any(args[i] == "mail" and args[i + 1] == "ingest" for i in range(len(args) - 1))


def quiet_logging(environ: os._Environ[str] | dict[str, str] | None = None) -> logging.Handler:
    """Send every log record (and Python warnings) to MAIL_PIPE_LOG, else syslog, else nowhere; returns the handler."""
    env = os.environ if environ is None else environ
    target = env.get("MAIL_PIPE_LOG")
    handler: logging.Handler = logging.NullHandler()
    if target:
        handler = logging.FileHandler(target, encoding="utf-8")
    elif os.path.exists(SYSLOG_SOCKET):
        try:
            handler = SysLogHandler(address=SYSLOG_SOCKET, facility=SysLogHandler.LOG_MAIL)
        except OSError:
            handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("dsr-desk mail ingest[%(process)d]: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return handler
