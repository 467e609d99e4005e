"""Background work: dramatiq actors per domain and the scheduler.

Importing this package sets the broker from the environment, so actor modules
can be imported (by the `dramatiq` CLI or the web process) without an app. A
standalone worker or scheduler process builds its app with the factory named
by APP_FACTORY, a dotted "module:attribute" resolved when it is first needed
(the first message, the scheduler's start): this package never imports the
app factory, which imports it.
"""

import os
import sys

from app.jobs.broker import DEFAULT_NAMESPACE, BrokerConfigError, app_context, configure_broker

APP_FACTORY = "app:create_app"

app_context.use_factory(APP_FACTORY)
try:
    configure_broker(os.environ.get("DRAMATIQ_BROKER_URL"), namespace=os.environ.get("DRAMATIQ_NAMESPACE") or DEFAULT_NAMESPACE)
except BrokerConfigError as exc:
    # The worker and scheduler processes import this first: a one-line error, never a traceback.
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
