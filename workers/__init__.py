"""Background work: dramatiq actors per domain and the scheduler.

Importing this package sets the broker from the environment, so actor modules
can be imported (by the `dramatiq` CLI or the web process) without an app.
"""

import os

from workers.broker import DEFAULT_NAMESPACE, configure_broker

configure_broker(os.environ.get("DRAMATIQ_BROKER_URL"), namespace=os.environ.get("DRAMATIQ_NAMESPACE") or DEFAULT_NAMESPACE)
