"""Background work: dramatiq actors per domain and the scheduler.

Importing this package sets the broker from the environment, so actor modules
can be imported (by the `dramatiq` CLI or the web process) without an app.
"""

import os
import sys

from workers.broker import DEFAULT_NAMESPACE, BrokerConfigError, configure_broker

try:
    configure_broker(os.environ.get("DRAMATIQ_BROKER_URL"), namespace=os.environ.get("DRAMATIQ_NAMESPACE") or DEFAULT_NAMESPACE)
except BrokerConfigError as exc:
    # The worker and scheduler processes import this first: a one-line error, never a traceback.
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
