"""email blind indexes are of the mailbox: `+tag` dropped (issue 12 item 4)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30

The instruction gate and routing now treat `subject+tag@example.org` as
`subject@example.org` (app.addresses.mailbox). A blind index is an HMAC of the
normalised value, so the index of every stored address with a `+tag` changes:
this re-computes them (app.keys.reindex; only tagged values are written). It
needs the keyring: under `flask --app wsgi db upgrade` the app's, otherwise one
built from the environment (MASTER_SECRET ...). A database without email
ciphertexts needs no key. Downgrade leaves the new index values: an old release
would then miss tagged addresses until they are written again, the behaviour
this revision fixes, and nothing else.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy.orm import Session

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _keyring():  # type: ignore[no-untyped-def]
    from flask import current_app, has_app_context

    from app.crypto.keyring import Keyring, get_keyring
    from config.settings import config_from_env

    if has_app_context():
        return get_keyring(current_app)
    return Keyring.from_config(config_from_env())


def upgrade() -> None:
    import app.models  # noqa: F401  (every model, so every encrypted field is registered)
    from app.crypto.fields import FIELDS
    from app.crypto.keyring import EXTENSION_KEY
    from app.keys.reindex import reindex_mailboxes

    conn = op.get_bind()
    tables = sorted({spec.table for spec in FIELDS if spec.normalise == "email"})
    if not any(conn.exec_driver_sql(f"SELECT 1 FROM {t} LIMIT 1").first() for t in tables if conn.dialect.has_table(conn, t)):
        return
    session = Session(bind=conn, info={EXTENSION_KEY: _keyring()})
    try:
        reindex_mailboxes(session)
        session.flush()
    finally:
        session.close()


def downgrade() -> None:
    pass
