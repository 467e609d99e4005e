"""dramatiq wiring: the broker URL picks the broker, actors get an app context, importing actors creates no app."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import dramatiq
import grimp
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from flask import Flask, current_app
from sqlalchemy import select

from app.extensions import db
from app.jobs.broker import AppContextMiddleware, BrokerConfigError, FactoryNotFound, app_context, configure_broker, make_broker, resolve_factory, start_worker
from app.jobs.models import JobState
from config.settings import REPO_ROOT
from tests import NAMESPACE
from tests.databases import TEST_BROKER_URL
from workers import APP_FACTORY, maintenance

# CI sets TEST_RABBITMQ_URL: there the RabbitMQ test must run, an unreachable server is a failure.
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672/"
RABBITMQ_REQUIRED = bool(os.environ.get("TEST_RABBITMQ_URL"))


def reachable(url: str) -> bool:
    """Whether something accepts TCP connections at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=1):
            return True
    except OSError:
        return False


def test_an_unset_url_selects_the_in_process_stub() -> None:
    assert isinstance(make_broker(None), StubBroker)
    assert isinstance(make_broker(""), StubBroker)


def test_the_in_process_worker_runs_a_short_delay_while_long_delays_wait() -> None:
    # Given an in-process broker whose queue was declared before its worker started (the embedded default's order)
    broker = make_broker(None)
    ran: queue.Queue[str] = queue.Queue()
    bell = dramatiq.actor(ran.put, broker=broker, actor_name="bell", max_retries=0)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        # When more messages than the ordinary prefetch (2 x threads) wait out a ten-minute delay
        for _ in range(6):
            bell.send_with_options(args=("later",), delay=600_000)
        bell.send_with_options(args=("soon",), delay=50)
        # Then the 50 ms message still runs at once (it waited for the long ones when the delay queue was consumed as an ordinary one)
        assert ran.get(timeout=5) == "soon"
        assert ran.empty()
    finally:
        worker.stop()
        broker.close()


def test_a_redis_url_selects_redis_in_its_namespace() -> None:
    broker = make_broker("redis://127.0.0.1:6379/0", namespace="dsr-elsewhere")
    assert isinstance(broker, RedisBroker)
    assert broker.namespace == "dsr-elsewhere"


def test_an_amqp_url_selects_rabbitmq_with_publisher_confirms() -> None:
    broker = make_broker(RABBITMQ_URL)
    assert isinstance(broker, RabbitmqBroker)
    # dramatiq leaves confirms off by default; without them a send can vanish silently.
    assert broker.confirm_delivery is True


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(BrokerConfigError, match="DRAMATIQ_BROKER_URL"):
        make_broker("kafka://127.0.0.1:9092")


@pytest.fixture
def rabbitmq() -> Iterator[RabbitmqBroker]:
    """A RabbitMQ broker (not the suite's global one) whose test queues are deleted afterwards."""
    if not reachable(RABBITMQ_URL):
        if RABBITMQ_REQUIRED:
            pytest.fail(f"TEST_RABBITMQ_URL is set but nothing listens at {urlsplit(RABBITMQ_URL).hostname}:{urlsplit(RABBITMQ_URL).port}")
        pytest.skip("no RabbitMQ server on 127.0.0.1:5672 (set TEST_RABBITMQ_URL to require one)")
    broker = make_broker(RABBITMQ_URL)
    assert isinstance(broker, RabbitmqBroker)
    try:
        yield broker
    finally:
        for name in broker.get_declared_queues():
            for q in (name, f"{name}.DQ", f"{name}.XQ"):
                broker.channel.queue_delete(q)
        broker.close()


def test_a_message_round_trips_through_rabbitmq_and_a_real_worker(rabbitmq: RabbitmqBroker) -> None:
    received: queue.Queue[str] = queue.Queue()

    def echo(text: str) -> None:
        received.put(text)

    queue_name = f"{NAMESPACE}-{uuid.uuid4().hex[:6]}"
    echo_actor = dramatiq.actor(echo, broker=rabbitmq, actor_name=f"echo_{queue_name}", queue_name=queue_name, max_retries=0)
    worker = dramatiq.Worker(rabbitmq, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        echo_actor.send("ping through rabbitmq")
        assert received.get(timeout=10) == "ping through rabbitmq"
    finally:
        worker.stop()


class _Probe:
    """Records what an actor saw of Flask."""

    def __init__(self) -> None:
        self.apps: list[Flask] = []

    def __call__(self) -> None:
        self.apps.append(current_app._get_current_object())


def _process_on_stub(middleware: AppContextMiddleware, messages: int) -> list[Flask]:
    broker = StubBroker()
    broker.add_middleware(middleware)
    probe = _Probe()
    probe_actor = dramatiq.actor(probe, broker=broker, actor_name="probe", max_retries=0)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        for _ in range(messages):
            probe_actor.send()
        broker.join(probe_actor.queue_name, fail_fast=True)
        worker.join()
    finally:
        worker.stop()
        broker.close()
    return probe.apps


def test_the_middleware_runs_each_message_in_the_attached_apps_context(app: Flask) -> None:
    middleware = AppContextMiddleware()
    middleware.attach(app)
    assert _process_on_stub(middleware, 2) == [app, app]


def test_a_standalone_worker_builds_its_app_once_on_the_first_message(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Flask] = []

    def fake_create_app() -> Flask:
        built.append(app)
        return app

    monkeypatch.setattr("app.create_app", fake_create_app)
    middleware = AppContextMiddleware(factory=APP_FACTORY)
    assert built == []  # nothing is built until a message arrives
    assert _process_on_stub(middleware, 3) == [app, app, app]
    assert built == [app]


# The app a dotted factory name below resolves to (set by the test that names it).
_NAMED: list[Flask] = []


def named_factory() -> Flask:
    """An app factory the tests name as "tests.workers.test_broker:named_factory"."""
    return _NAMED[0]


def test_the_worker_processes_app_factory_is_resolved_from_its_dotted_name(app: Flask) -> None:
    # The worker and scheduler processes name the factory as a string: the workers package imports no app factory.
    assert APP_FACTORY == "app:create_app"
    assert app_context.factory == APP_FACTORY
    import app as root

    assert resolve_factory(APP_FACTORY) is root.create_app
    # Given a worker whose factory is named, not imported, the name is resolved when the first message arrives
    _NAMED[:] = [app]
    middleware = AppContextMiddleware()
    middleware.use_factory("tests.workers.test_broker:named_factory")
    assert _process_on_stub(middleware, 2) == [app, app]


@pytest.mark.parametrize(
    ("dotted", "said"),
    [("app.create_app", "module:attribute"), ("no_such_module_here:create_app", "cannot be imported"), ("app:no_such_factory", "no callable")],
)
def test_a_bad_factory_name_is_refused_in_one_line(dotted: str, said: str) -> None:
    with pytest.raises(FactoryNotFound, match=said):
        resolve_factory(dotted)


def test_only_the_app_factory_imports_the_workers_and_nothing_imports_the_factory() -> None:
    graph = grimp.build_graph("app", "workers", "config")
    # /healthz and the command registrar use the platform's broker (app.jobs.broker), never the actors
    for module in ("app.health", "app.cli"):
        assert not graph.chain_exists(importer=module, imported="workers", as_packages=True), graph.find_shortest_chain(importer=module, imported="workers")
    # The composition root (app/__init__.py) is imported by no module of the desk: workers name it as a string
    assert graph.find_modules_that_directly_import("app") == set()


_IMPORT_PROBE = """
import app
def refuse(*args, **kwargs):
    raise SystemExit("create_app was called while importing the actors")
app.create_app = refuse
import dramatiq, workers.all
broker = dramatiq.get_broker()
print(type(broker).__name__, " ".join(sorted(broker.get_declared_actors())))
"""


@pytest.mark.parametrize(
    ("url", "expected"),
    # Unset (the embedded default) and a RabbitMQ URL; Redis is the suite's own broker when TEST_BROKER_URL is set.
    [("", "InProcessBroker"), ("amqp://guest:guest@127.0.0.1:5672/", "RabbitmqBroker")],
)
def test_importing_the_actors_selects_the_broker_and_creates_no_app(url: str, expected: str) -> None:
    # A fresh interpreter: in this process the suite's app exists already.
    env = {k: v for k, v in os.environ.items() if k not in ("DRAMATIQ_BROKER_URL", "DRAMATIQ_NAMESPACE")}
    env["DRAMATIQ_BROKER_URL"] = url
    done = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    broker_type, *actors = done.stdout.split()
    assert broker_type == expected
    assert "heartbeat" in actors


def _heartbeat_row(app: Flask) -> JobState | None:
    with app.app_context(), db.session_scope() as session:
        return session.scalar(select(JobState).where(JobState.name == maintenance.HEARTBEAT))


def test_the_heartbeat_is_processed_by_the_in_process_worker_and_written_to_job_state(committed_app: Flask) -> None:
    # The embedded default: the in-process stub broker and a worker thread of this process.
    restore = dramatiq.get_broker()
    broker = configure_broker(None, namespace=NAMESPACE)
    try:
        assert isinstance(broker, StubBroker)
        assert _heartbeat_row(committed_app) is None
        broker.flush_all()  # messages other tests left behind are not this test's business
        worker = start_worker(threads=1)
        try:
            maintenance.heartbeat.send()
            broker.join(maintenance.heartbeat.queue_name, fail_fast=True)
            worker.join()
        finally:
            worker.stop()
        row = _heartbeat_row(committed_app)
        assert row is not None and row.updated_at.tzinfo is not None
    finally:
        if restore is not broker:
            configure_broker(TEST_BROKER_URL, namespace=NAMESPACE)


@pytest.mark.skipif(not TEST_BROKER_URL, reason="TEST_BROKER_URL is unset: the suite runs on the in-process broker")
def test_the_heartbeat_goes_through_the_real_broker_to_a_worker_thread(committed_app: Flask) -> None:
    broker = dramatiq.get_broker()
    assert isinstance(broker, RedisBroker | RabbitmqBroker)
    assert _heartbeat_row(committed_app) is None
    broker.flush_all()
    worker = start_worker(threads=1)
    try:
        maintenance.heartbeat.send()
        deadline = time.monotonic() + 10
        while (row := _heartbeat_row(committed_app)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert row is not None
