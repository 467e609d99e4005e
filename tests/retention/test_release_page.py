"""After a hold's release, the original erasure's page and the controller's notice say so (issue 14 item 2).

Found by an operator: the page of the erasure still said "ended …; erased by the next retention run" after the
release had run, a finished run whose whole content a hold kept said "What was changed: nothing yet", and the
notice to the controller did not say it was a hold's release.
"""

from __future__ import annotations

import re

import time_machine
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.mail.models import OutboxEmail
from app.subject_data import closing
from app.subject_data.models import SubjectRun
from tests.conftest import AuthActions
from tests.retention.support import SYSTEM, erase_under_instruction
from tests.subject_data.support import CANARIES, SETTINGS, T0, scene


def _cli(runner: FlaskCliRunner, *args: str) -> str:
    result = runner.invoke(args=["retention", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_erasure_page_and_the_notice_say_the_hold_was_released(runner: FlaskCliRunner, session: Session, client: FlaskClient, auth: AuthActions) -> None:
    with time_machine.travel(T0, tick=False):
        # Given the subject's erasure kept whole under a litigation hold on the controller
        sc = scene(session)
        session.commit()
        out = _cli(runner, "hold", "add", "--controller", str(sc.controller.id), "--basis", "litigation", "--indefinite")
        found = re.search(r"hold (\d+) placed", out)
        assert found
        hold_id = int(found.group(1))
        record = erase_under_instruction(session, sc)
        session.commit()
        kept = len(record.report["kept"])
        assert kept > 0 and not record.report.get("changed")
        auth.login("privacy_officer")
        # Then its page, the run being done, says nothing was changed (not "nothing yet"), the hold in force
        page = client.get(f"/subject-data/runs/{record.id}").get_data(as_text=True)
        assert "nothing yet" not in page and '<td class="muted">nothing</td>' in page and "in force" in page
        # When the hold is lifted: until the next retention run, the page says that run will erase it
        _cli(runner, "hold", "lift", str(hold_id))
        page = client.get(f"/subject-data/runs/{record.id}").get_data(as_text=True)
        assert f"ended {T0.date().isoformat()}; erased by the next retention run" in page
        # When retention runs
        _cli(runner, "run")
        session.expire_all()
        release = session.scalars(select(SubjectRun).where(SubjectRun.dsr_id == sc.dsr.id, SubjectRun.id != record.id)).one()
        assert release.state == "done"
        # Then the erasure's page says which run released the hold, when, and how many items it erased
        page = client.get(f"/subject-data/runs/{record.id}").get_data(as_text=True)
    assert "erased by the next retention run" not in page
    assert f'released by <a href="/subject-data/runs/{release.id}">run {release.id}</a> on {T0.date().isoformat()} ({kept} items erased)' in page
    # And the notice to the controller says it is a hold's release, in its subject and its first line
    [notice] = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_hold_release")).all()
    assert "legal hold released" in notice.subject and str(sc.dsr.reference) in notice.subject
    assert "it is the erasure of items a legal hold had kept" in (notice.body_text or "")
    # And the request's completion notice labels the release run as such
    closing.close(session, sc.dsr.id, settings=SETTINGS, by=SYSTEM, now=T0)
    [completion] = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_completion")).all()
    assert f"- erasure of the items a legal hold had kept, now that it has ended (hold release) (run {release.id})" in (completion.body_text or "")
    for email in (notice, completion):
        text = f"{email.subject}\n{email.body_text}".lower()
        assert not [c for c in CANARIES if c in text]
