"""The ceiling of shared/PERFORMANCE.md, re-measured in the same run: Flask + Jinja + one ORM 50-row query.

No desk code: `gunicorn -c config/gunicorn.py bench.ceiling_app:app` with CEILING_DATABASE_URL
set to the benchmark's database. The machines are noisy, so the desk's page is
reported against this figure measured minutes apart on the same machine.
"""

from __future__ import annotations

import os

from flask import Flask, render_template_string
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class _Base(DeclarativeBase):
    pass


class _Controller(_Base):
    __tablename__ = "controllers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))


_PAGE = """<!doctype html><html><head><title>Controllers</title></head><body><table>
<thead><tr><th>#</th><th>Name</th><th>Status</th></tr></thead><tbody>
{% for c in rows %}<tr><td>{{ c.id }}</td><td>{{ c.name }}</td><td>{{ c.status }}</td></tr>{% endfor %}
</tbody></table></body></html>"""

engine = create_engine(os.environ["CEILING_DATABASE_URL"], pool_pre_ping=True)
app = Flask(__name__)


@app.get("/controllers/")
def controllers() -> str:
    with Session(engine) as session:
        rows = list(session.scalars(select(_Controller).order_by(_Controller.name, _Controller.id).limit(50)))
        return render_template_string(_PAGE, rows=rows)
