"""The doorbell the DSR forward, the outbox and subject-data runs share: rung after the commit, forgotten on rollback, never raising."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.jobs.doorbell import LONGEST_DELAY, Doorbell

log = logging.getLogger("tests.doorbell")


class Recorder:
    """A stub broker with one actor, that remembers what was enqueued (args, delay)."""

    def __init__(self) -> None:
        self.broker = StubBroker()
        self.sent: list[tuple[tuple[Any, ...], int | None]] = []
        self.down = False
        dramatiq.actor(lambda item_id: None, actor_name="test_bell", broker=self.broker)
        real = self.broker.enqueue

        def enqueue(message: Any, *, delay: int | None = None) -> Any:
            if self.down:
                raise ConnectionError("broker unreachable")
            self.sent.append((tuple(message.args), delay))
            return real(message, delay=delay)

        self.broker.enqueue = enqueue  # type: ignore[method-assign]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(dramatiq, "get_broker", lambda: rec.broker)
    return rec


def _bell(**kw: Any) -> Doorbell:
    return Doorbell("test_bell", key="test_doorbell_ids", log=log, broker_down="test: broker unavailable (%s); item %s", **kw)


@pytest.fixture
def bell() -> Iterator[Doorbell]:
    made = _bell(no_actor="test: no %s actor; %d item(s) wait")
    yield made
    # A doorbell listens on every Session for good: take this one's listeners off again.
    event.remove(Session, "after_commit", made._ring_after_commit)
    event.remove(Session, "after_rollback", made._forget_after_rollback)


def test_ids_are_rung_once_each_in_order_only_after_the_commit(session: Session, recorder: Recorder, bell: Doorbell) -> None:
    bell.ring_after_commit(session, [3, 1])
    bell.ring_after_commit(session, {2, 3})
    session.flush()
    assert recorder.sent == []
    session.commit()
    assert recorder.sent == [((1,), None), ((2,), None), ((3,), None)]
    session.commit()  # a later transaction with nothing noted rings nothing
    assert len(recorder.sent) == 3


def test_a_rolled_back_transaction_rings_nothing(session: Session, recorder: Recorder, bell: Doorbell) -> None:
    session.connection()  # the transaction has begun, as it has once a service flushed the row it rings for
    bell.ring_after_commit(session, [7])
    session.rollback()
    session.commit()
    assert recorder.sent == []


def test_a_broker_failure_is_logged_per_id_and_not_raised(recorder: Recorder, bell: Doorbell, caplog: pytest.LogCaptureFixture) -> None:
    recorder.down = True
    with caplog.at_level(logging.WARNING, logger="tests.doorbell"):
        assert bell.ring([4, 5]) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "test: broker unavailable (ConnectionError); item 4",
        "test: broker unavailable (ConnectionError); item 5",
    ]


def test_a_delay_goes_with_the_message_in_milliseconds_never_early(recorder: Recorder, bell: Doorbell) -> None:
    # Rounded up, plus 5 ms (4ea892b): a message that arrives before its row is due finds nothing to do.
    assert bell.ring([9], delay=dt.timedelta(seconds=1.5)) == 1
    assert bell.ring([9], delay=dt.timedelta(microseconds=1500)) == 1
    assert bell.ring([9], delay=dt.timedelta(0)) == 1
    assert recorder.sent == [((9,), 1505), ((9,), 7), ((9,), None)]


def test_a_wait_longer_than_the_horizon_is_left_to_the_sweeper(recorder: Recorder, bell: Doorbell) -> None:
    # A delayed message holds one of the worker's prefetch slots until it is due: hours of backoff are not rung
    assert bell.ring([9], delay=LONGEST_DELAY) == 1
    assert bell.ring([9], delay=LONGEST_DELAY + dt.timedelta(seconds=1)) == 0
    assert bell.ring([9], delay=dt.timedelta(hours=6)) == 0
    assert recorder.sent == [((9,), LONGEST_DELAY.total_seconds() * 1000 + 5)]


def test_an_undeclared_actor_rings_nothing_and_says_so_when_asked(monkeypatch: pytest.MonkeyPatch, bell: Doorbell, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(dramatiq, "get_broker", StubBroker)
    quiet = _bell()
    try:
        with caplog.at_level(logging.WARNING, logger="tests.doorbell"):
            assert bell.ring([1, 2]) == 0
            assert quiet.ring([1, 2]) == 0
    finally:
        event.remove(Session, "after_commit", quiet._ring_after_commit)
        event.remove(Session, "after_rollback", quiet._forget_after_rollback)
    assert [r.getMessage() for r in caplog.records] == ["test: no test_bell actor; 2 item(s) wait"]
