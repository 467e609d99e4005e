"""The record categories where an operator or officer looks: `retention run --dry-run`, `retention policies`, the retention page."""

from __future__ import annotations

import datetime as dt
import json

from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy.orm import Session

from tests.conftest import AuthActions
from tests.retention.records import quarantined, staff_session

LONG_AGO = dt.datetime(2020, 1, 1, 9, 0, tzinfo=dt.UTC)


def test_the_dry_run_names_the_record_categories_with_their_counts_and_the_desk(runner: FlaskCliRunner, session: Session) -> None:
    quarantined(session, "a@nowhere.example", LONG_AGO)
    quarantined(session, "b@nowhere.example", LONG_AGO, n=1)
    staff_session(session, "gone@desk.example", LONG_AGO, ended=LONG_AGO)
    session.commit()
    out = runner.invoke(args=["retention", "run", "--dry-run", "--category", "quarantined_mail"])
    assert out.exit_code == 0, out.output
    assert "quarantined_mail\tdesk\twould delete 2 quarantined message(s) (after 30 days" in out.output
    lines = json.loads(runner.invoke(args=["retention", "run", "--dry-run", "--json"]).output)
    by_category = {(li["category"], li["controller_id"]): li for li in lines}
    assert by_category[("ended_sessions", None)]["due"] == 1 and by_category[("staff_login_ips", None)]["due"] == 1
    assert by_category[("quarantined_mail", None)]["unit"] == "quarantined message(s)"
    # The real run does what the dry run said, and says so
    done = runner.invoke(args=["retention", "run", "--category", "quarantined_mail"])
    assert done.exit_code == 0 and "quarantined_mail due 2, rows changed 4, held 0" in done.output, done.output
    listed = json.loads(runner.invoke(args=["retention", "policies", "--json"]).output)
    covered = {p["category"] for p in listed if p["covered"]}
    assert {"quarantined_mail", "outbox_payloads", "dsr_records", "export_files", "ended_sessions", "staff_login_ips"} <= covered


def test_the_retention_page_previews_the_record_categories(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    quarantined(session, "a@nowhere.example", LONG_AGO)
    session.commit()
    auth.login("privacy_officer")
    html = client.get("/retention/").get_data(as_text=True)
    for part in ("quarantined_mail", "1 quarantined message(s)", "desk", "ended_sessions", "dsr_records"):
        assert part in html, part
