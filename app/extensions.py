"""Unbound extension singletons, bound to the app in `create_app`."""

from flask_wtf.csrf import CSRFProtect

from app.db import Database

db = Database()
csrf = CSRFProtect()
