"""The WSGI entry point: `gunicorn wsgi:app` and `flask --app wsgi ...`."""

import sys

from config.settings import ConfigError

try:
    from app import create_app

    app = create_app()
except ConfigError as exc:
    # One line naming the variable, never a traceback (operator contract).
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
