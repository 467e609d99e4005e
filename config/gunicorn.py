"""gunicorn settings for production: `gunicorn -c config/gunicorn.py wsgi:app`.

Binds BIND (default 127.0.0.1:5000, loopback only unless asked: WECO §9.1(c)).
Sync workers: steadier than gthread here (shared/PERFORMANCE.md).
"""

import os

from config.settings import DEFAULT_BIND, parse_bind

_host, _port = parse_bind(os.environ.get("BIND") or DEFAULT_BIND)
bind = f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
timeout = 30
accesslog = "-"
# The access log must not carry query strings: they could hold personal data.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


def post_worker_init(worker: object) -> None:
    """Move everything the worker loaded at start-up (modules, app, templates) out of the garbage collector's sight.

    Python docs, gc.freeze(): the oldest generation's collections then no longer walk
    those long-lived objects on every request's garbage; it shortens the pauses behind
    the slowest requests.
    """
    import gc

    gc.freeze()
