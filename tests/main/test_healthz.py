"""`/healthz` tells a monitor when the broker is down, without personal data or credentials."""

from __future__ import annotations

import socket

import dramatiq
import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.jobs.broker import make_broker
from tests.factories import make_controller


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_an_unreachable_broker_makes_healthz_503_and_says_so(client: FlaskClient, session: Session, monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    make_controller(session, name="Canary GmbH", dsr_contacts=["canary.person@canary.example"])
    # Given the configured broker is on a port where nothing listens (credentials in the URL)
    down = make_broker(f"{scheme}://desk:s3cret-pw@127.0.0.1:{closed_port()}/0")
    monkeypatch.setattr(dramatiq, "get_broker", lambda: down)
    # When a monitor asks
    response = client.get("/healthz")
    # Then it is told the broker is unreachable, with a status a load balancer acts on
    assert response.status_code == 503
    body = response.get_json()
    assert body["broker"] == "unreachable"
    assert body["status"] == "degraded"
    assert body["database"] == "ok"
    text = response.get_data(as_text=True)
    for secret in ("canary", "Canary", "s3cret", "desk:"):
        assert secret not in text
