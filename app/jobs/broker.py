"""The dramatiq broker: Redis or RabbitMQ from DRAMATIQ_BROKER_URL, in-process when unset.

The broker is only a doorbell (DESIGN.md): every job with a deadline is a
database row, and sweepers re-enqueue what is due, so losing a message delays
work but never loses it.

Platform code: it never imports the app factory. A process that has no app
yet (a standalone `dramatiq` worker, the scheduler) names the factory as a
dotted string, "module:attribute" (as gunicorn and flask take `wsgi:app`),
resolved when the first message arrives (`resolve_factory`).
"""

from __future__ import annotations

import importlib
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from flask import Flask

from app.exceptions import DeskError
from config.settings import ConfigError

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "dsr-desk"

AppFactory = Callable[[], Flask]


class InProcessBroker(StubBroker):
    """dramatiq's in-process broker, with its delay queues consumed as delay queues.

    StubBroker lists `default.DQ` among its ordinary queues too, so a worker
    started after the queue was declared (the embedded default, the tests)
    consumed it as an ordinary queue, with the small prefetch of 2 x threads
    instead of the delay queue's 1,000 x threads. Delayed messages wait in the
    worker's memory holding a prefetch slot, so four retries waiting out a
    ten-minute backoff stopped every later delayed doorbell (a probe after a
    relay outage) until one of them came due. Listing only the canonical
    queues here makes the worker declare the delay queue as one.
    """

    def get_declared_queues(self) -> set[str]:
        """The canonical queues only (their delay queues are in `get_declared_delay_queues`)."""
        return super().get_declared_queues() - self.get_declared_delay_queues()


class BrokerConfigError(ConfigError, DeskError):
    """DRAMATIQ_BROKER_URL names no broker the desk supports."""


class FactoryNotFound(ConfigError, DeskError):
    """The dotted name of the app factory names no importable callable."""


def resolve_factory(dotted: str) -> AppFactory:
    """The callable named by "package.module:attribute" (e.g. "app:create_app"), imported now.

    FactoryNotFound when the name is malformed, the module does not import or has no such attribute.
    """
    module_name, sep, attribute = dotted.partition(":")
    if not sep or not module_name or not attribute:
        raise FactoryNotFound(f"the app factory must be named as module:attribute, not {dotted!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise FactoryNotFound(f"the app factory module {module_name!r} cannot be imported ({exc.name} is missing)") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise FactoryNotFound(f"{module_name} has no callable {attribute!r}")
    built: AppFactory = factory
    return built


class AppContextMiddleware(Middleware):
    """Runs every message inside a Flask app context.

    The web process attaches its own app; a standalone `dramatiq` worker
    process builds one lazily with the factory named by `factory` (a dotted
    "module:attribute", resolved on its first message), so importing the actor
    modules never creates an app.
    """

    def __init__(self, factory: str | None = None) -> None:
        self.app: Flask | None = None
        self.factory = factory
        self._lock = threading.Lock()
        self._local = threading.local()

    def attach(self, app: Flask) -> None:
        """Use this app for messages processed in this process."""
        self.app = app

    def use_factory(self, dotted: str) -> None:
        """Build the app with the factory named "module:attribute" if none is attached by the first message."""
        self.factory = dotted

    def _get_app(self) -> Flask:
        with self._lock:
            if self.app is None:
                if self.factory is None:
                    raise FactoryNotFound("no app attached to this worker and no app factory named (AppContextMiddleware.use_factory)")
                self.app = resolve_factory(self.factory)()
            return self.app

    def before_process_message(self, broker: Any, message: Any) -> None:
        ctx = self._get_app().app_context()
        ctx.push()
        self._local.ctx = ctx

    def _pop(self) -> None:
        ctx = getattr(self._local, "ctx", None)
        if ctx is not None:
            self._local.ctx = None
            ctx.pop()

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        self._pop()

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self._pop()


app_context = AppContextMiddleware()
# (url, namespace) of the broker configure_broker last installed.
_current_key: tuple[str | None, str] | None = None


def make_broker(url: str | None, *, namespace: str = DEFAULT_NAMESPACE) -> dramatiq.Broker:
    """A broker for the URL: redis://, amqp://, or the in-process stub when None."""
    if not url:
        return InProcessBroker()
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url, namespace=namespace)
    if scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        # Publisher confirms are off by default in dramatiq; a send must not vanish silently.
        return RabbitmqBroker(url=url, confirm_delivery=True)
    raise BrokerConfigError("DRAMATIQ_BROKER_URL must start with redis://, rediss://, amqp:// or amqps://")


def configure_broker(url: str | None, *, namespace: str = DEFAULT_NAMESPACE) -> dramatiq.Broker:
    """Make the broker for URL the global one, moving already declared actors onto it."""
    global _current_key
    key = (url or None, namespace)
    previous = dramatiq.get_broker() if _current_key is not None else None
    if previous is not None and _current_key == key:
        return previous
    broker = make_broker(url, namespace=namespace)
    broker.add_middleware(app_context)
    if previous is not None:
        for name in previous.get_declared_actors():
            moved = previous.get_actor(name)
            moved.broker = broker
            broker.declare_actor(moved)
    dramatiq.set_broker(broker)
    _current_key = key
    return broker


def is_in_process() -> bool:
    """True when messages are processed by a worker thread in this process."""
    return isinstance(dramatiq.get_broker(), StubBroker)


def broker_status(*, quiet: bool = False) -> str:
    """ "in-process", "ok" or "unreachable", for /healthz (`quiet`: no log line when down, for a caller that logs outages itself)."""
    broker = dramatiq.get_broker()
    if isinstance(broker, StubBroker):
        return "in-process"
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.brokers.redis import RedisBroker

    try:
        if isinstance(broker, RedisBroker):
            broker.client.ping()
        elif isinstance(broker, RabbitmqBroker) and not broker.connection.is_open:
            return "unreachable"
    except Exception as exc:  # the client libraries raise many types; any means "down"
        if not quiet:
            log.warning("broker unreachable: %s", type(exc).__name__)
        return "unreachable"
    return "ok"


_STARTED: weakref.WeakSet[dramatiq.Worker] = weakref.WeakSet()


def start_worker(*, threads: int = 2, worker_timeout: int = 100) -> dramatiq.Worker:
    """A worker in this process (the embedded default, and tests against a real broker)."""
    worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=threads, worker_timeout=worker_timeout)
    worker.start()
    _STARTED.add(worker)
    return worker


def worker_in_this_process() -> bool:
    """True while a worker started here (`start_worker`) has live threads: with the in-process broker, only such a
    worker ever takes what this process enqueues (a separate `flask` command has none)."""
    return any(thread.is_alive() for worker in list(_STARTED) for thread in worker.workers)
