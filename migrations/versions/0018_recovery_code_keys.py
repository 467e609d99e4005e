"""recovery codes stored under a keyed hash (issue 12 item 9, ASVS 5.0 6.5.2)

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30

Recovery codes were stored as plain SHA-256 of the code. They are now
`k<master version>$base64(HMAC-SHA256(key, "<user id>:<sha256 of the code>"))`
(app.auth.mfa.keyed_digest), the key derived from the master secret. The inner
SHA-256 is what was stored, so existing codes are converted without knowing
them and keep working. Needs the keyring when there are codes: the app's under
`flask --app wsgi db upgrade`, otherwise one built from the environment.
Downgrade cannot undo a keyed hash: it deletes the codes (users regenerate them
from their account page after signing in with TOTP).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

codes = sa.table("recovery_codes", sa.column("id", sa.Integer), sa.column("user_id", sa.Integer), sa.column("code_hash", sa.String))


def _keyring():  # type: ignore[no-untyped-def]
    from flask import current_app, has_app_context

    from app.crypto.keyring import Keyring, get_keyring
    from config.settings import config_from_env

    if has_app_context():
        return get_keyring(current_app)
    return Keyring.from_config(config_from_env())


def upgrade() -> None:
    from app.auth.mfa import RECOVERY_KEY_PURPOSE, keyed_digest

    conn = op.get_bind()
    legacy = conn.execute(sa.select(codes.c.id, codes.c.user_id, codes.c.code_hash).where(~codes.c.code_hash.like("k%$%"))).all()
    if not legacy:
        return
    keyring = _keyring()
    version = keyring.current_version
    key = keyring.derive(RECOVERY_KEY_PURPOSE, version)
    for row in legacy:
        conn.execute(sa.update(codes).where(codes.c.id == row.id).values(code_hash=keyed_digest(key, version, row.user_id, row.code_hash)))


def downgrade() -> None:
    op.execute("DELETE FROM recovery_codes")
