"""Audit events' personal parts: encrypted under their month's key, readable until it is shredded, the chain intact after."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.audit.chain import canonical, event_hash, personal_digest
from app.audit.models import AuditEvent
from app.audit.personal import open_parts
from app.audit.shredding import due_periods, shred_periods_before
from app.crypto.keyring import Keyring
from app.crypto.models import PeriodKey
from app.crypto.periods import AUDIT, period_bounds, period_of
from app.keys.service import key_status, rewrap_keys
from app.principal import Principal
from tests.conftest import TEST_MASTER_SECRET

STAFF = Principal.staff(7)
SYSTEM = Principal.system("tests: audit personal")
JAN = dt.datetime(2020, 1, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)  # the last instant of January 2020
FEB = dt.datetime(2020, 2, 1, 0, 0, tzinfo=dt.UTC)
V2 = "second-master-secret-for-tests-0123456789abcdef"


def _part(session: Session, event: AuditEvent) -> object:
    return open_parts(session, [(event.seq, event.personal_ct)]).get(event.seq)


def _key(session: Session, period: str) -> PeriodKey | None:
    return session.scalars(select(PeriodKey).where(PeriodKey.purpose == AUDIT, PeriodKey.period == period)).first()


def test_a_personal_part_is_stored_encrypted_and_read_back(session: Session) -> None:
    event = audit.record(
        session, by=STAFF, action="test.personal", target_type="user", target_id=7, details={"n": 1}, personal={"client_address": "203.0.113.9"}, now=JAN
    )
    assert event.personal_ct is not None and b"203.0.113.9" not in event.personal_ct
    assert "203.0.113.9" not in event.details_json and event.details == {"n": 1}
    # The hash commits to the ciphertext (format 2), and a row without a part keeps format 1
    assert event.link().personal == personal_digest(event.personal_ct) and event.hash == event_hash(event.link())
    plain = audit.record(session, by=STAFF, action="test.personal", target_type="user", now=JAN)
    assert plain.personal_ct is None and plain.link().personal is None
    assert canonical(plain.link()).endswith(b'"v":1}') and b'"personal":' not in canonical(plain.link())
    assert canonical(event.link()).endswith(b'"v":2}') and f'"personal":"{personal_digest(event.personal_ct)}"'.encode() in canonical(event.link())
    part = _part(session, event)
    assert part is not None and part.state == "readable" and part.values == {"client_address": "203.0.113.9"}  # type: ignore[attr-defined]
    # One key for the month, wrapped under the master key (never stored in clear)
    key = _key(session, "2020-01")
    assert key is not None and key.state == "active" and key.master_version == 1 and key.wrapped_key is not None


def test_a_controller_principal_address_goes_to_the_personal_part_not_the_columns(session: Session) -> None:
    event = audit.record(session, by=Principal(kind="controller", id=5, name="dpo@acme.example"), action="instruction.receive", target_type="dsr", now=JAN)
    assert event.actor_name is None and "@" not in event.details_json
    part = _part(session, event)
    assert part is not None and part.values == {"actor_address": "dpo@acme.example"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "personal",
    [{"address": {"nested": "x"}}, {"ratio": 0.5}, {"Bad Key": "x"}, {"note": "x" * 5000}, {f"f{i}": i for i in range(17)}],
)
def test_a_personal_part_other_than_a_small_flat_object_is_refused(session: Session, personal: dict[str, object]) -> None:
    before = audit.chain_head(session)
    with pytest.raises(audit.InvalidAuditEvent):
        audit.record(session, by=STAFF, action="test.personal", target_type="user", personal=personal, now=JAN)
    assert audit.chain_head(session) == before  # nothing appended


def test_a_part_copied_onto_another_event_does_not_decrypt(session: Session) -> None:
    one = audit.record(session, by=STAFF, action="test.personal", target_type="user", personal={"a": "one"}, now=JAN)
    two = audit.record(session, by=STAFF, action="test.personal", target_type="user", personal={"a": "two"}, now=JAN)
    moved = open_parts(session, [(two.seq, one.personal_ct)])[two.seq]
    assert moved.state == "unreadable" and moved.values is None


def test_shredding_a_month_makes_its_parts_unreadable_and_leaves_the_hashes(session: Session) -> None:
    # Given parts in January and February 2020
    jan = audit.record(session, by=STAFF, action="test.personal", target_type="user", controller_id=3, personal={"a": "january"}, now=JAN)
    feb = audit.record(session, by=STAFF, action="test.personal", target_type="user", controller_id=3, personal={"a": "february"}, now=FEB)
    # When the months ending by the first instant of February are shredded
    assert [d.period for d in due_periods(session, FEB)] == ["2020-01"]
    result = shred_periods_before(session, FEB, by=SYSTEM, now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    # Then January's key is gone (the row says when), February's is not, and no event changed
    assert result.shredded == {"2020-01": 1} and result.kept == {}
    key = _key(session, "2020-01")
    assert key is not None and key.state == "shredded" and key.wrapped_key is None and key.master_version is None and key.shredded_at is not None
    session.expire_all()
    parts = open_parts(session, [(jan.seq, jan.personal_ct), (feb.seq, feb.personal_ct)])
    assert parts[jan.seq].state == "shredded" and parts[jan.seq].shown() == "[shredded]" and parts[jan.seq].values is None
    assert parts[feb.seq].values == {"a": "february"}
    again = session.get(AuditEvent, jan.id)
    assert again is not None and again.hash == event_hash(again.link())
    # The shredding is itself audited, ids and counts only
    mark = session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.personal_shredded").order_by(AuditEvent.seq.desc())).first()
    assert mark is not None and (mark.target_type, mark.target_id, mark.details) == ("audit_period", "2020-01", {"events": 1, "controllers": 1})
    # A second run finds nothing more
    assert shred_periods_before(session, FEB, by=SYSTEM, now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC)).shredded == {}


def test_a_kept_month_is_reported_and_not_shredded(session: Session) -> None:
    event = audit.record(session, by=STAFF, action="test.personal", target_type="user", personal={"a": "kept"}, now=JAN)
    result = shred_periods_before(session, FEB, keep={"2020-01": "hold 4: litigation"}, by=SYSTEM, now=FEB)
    assert result.kept == {"2020-01": "hold 4: litigation"} and "2020-01" not in result.shredded
    assert open_parts(session, [(event.seq, event.personal_ct)])[event.seq].values == {"a": "kept"}


def test_a_month_is_due_only_once_all_of_it_is_past_the_cutoff(session: Session) -> None:
    audit.record(session, by=STAFF, action="test.personal", target_type="user", personal={"a": "x"}, now=JAN)
    assert period_of(JAN) == "2020-01" and period_bounds("2020-01") == (dt.datetime(2020, 1, 1, tzinfo=dt.UTC), FEB)
    assert due_periods(session, FEB - dt.timedelta(microseconds=1)) == []
    assert [d.period for d in due_periods(session, FEB)] == ["2020-01"]


def test_recording_into_a_shredded_month_stores_no_part(session: Session) -> None:
    audit.record(session, by=STAFF, action="test.personal", target_type="user", personal={"a": "x"}, now=JAN)
    shred_periods_before(session, FEB, by=SYSTEM, now=FEB)
    late = audit.record(session, by=STAFF, action="test.personal", target_type="user", personal={"a": "late"}, now=JAN)
    assert late.personal_ct is None and late.hash == event_hash(late.link())


def test_keys_rotate_rewraps_the_month_keys_and_the_old_secret_is_then_not_needed(session: Session) -> None:
    session.info["keyring"] = Keyring(1, {1: TEST_MASTER_SECRET})
    event = audit.record(session, by=STAFF, action="test.personal", target_type="user", personal={"a": "rotated"}, now=JAN)
    session.info["keyring"] = Keyring(2, {1: TEST_MASTER_SECRET, 2: V2})
    v1 = next(v for v in key_status(session).versions if v.version == 1)
    assert v1.period_keys >= 1 and not v1.removable
    # When keys rotate re-wraps every key under version 2
    rewrap_keys(session, by=SYSTEM, now=FEB)
    key = _key(session, "2020-01")
    assert key is not None and key.master_version == 2
    # Then the part reads with version 2 alone
    session.info["keyring"] = Keyring(2, {2: V2})
    assert open_parts(session, [(event.seq, event.personal_ct)])[event.seq].values == {"a": "rotated"}
    # A keyring without the version that wraps it reads nothing, and says why
    session.info["keyring"] = Keyring(1, {1: TEST_MASTER_SECRET})
    unreadable = open_parts(session, [(event.seq, event.personal_ct)])[event.seq]
    assert unreadable.state == "unreadable" and unreadable.values is None
    assert unreadable.shown() == "[unreadable: master key version 2 not configured]"
