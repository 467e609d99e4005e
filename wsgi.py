"""The WSGI entry point: `gunicorn wsgi:app` and `flask --app wsgi ...`."""

import logging
import sys

from app.mail.pipemode import EX_CONFIG, EX_TEMPFAIL, invoked_as_pipe, quiet_logging
from config.settings import ConfigError

# An MTA's pipe (`mail ingest`): logs never reach stderr (it would end up in bounces), and failing to start
# defers the message (78 / 75) instead of bouncing it (app.mail.pipemode).
PIPE = invoked_as_pipe(sys.argv)
if PIPE:
    quiet_logging()

try:
    from app import create_app

    app = create_app()
except ConfigError as exc:
    if PIPE:
        logging.getLogger("mail.ingest").error("configuration error: %s", exc)
        print("4.3.5 the desk's configuration is incomplete; the message was not stored, retry later")
        raise SystemExit(EX_CONFIG) from None
    # One line naming the variable, never a traceback (operator contract).
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
except Exception as exc:
    if not PIPE:
        raise
    logging.getLogger("mail.ingest").exception("the desk could not start (%s)", type(exc).__name__)
    print("4.3.0 temporary failure; the message was not stored, retry later")
    raise SystemExit(EX_TEMPFAIL) from None
