"""Domain errors and HTTP errors mapped to pages without stack traces or personal data."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.crypto.cipher import DecryptionError

log = logging.getLogger(__name__)

MESSAGES = {
    400: ("Bad request", "The request could not be understood. Reload the form and try again."),
    403: ("Forbidden", "You do not have permission to do this."),
    404: ("Not found", "There is nothing here, or you may not see it."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "What you sent is larger than the desk accepts."),
    422: ("Unprocessable", "The input was refused."),
    429: ("Too many requests", "Slow down and try again in a moment."),
    500: ("Server error", "Something went wrong on our side. Nothing you submitted was changed."),
}


def _render(code: int, message: str | None = None) -> tuple[str, int]:
    title, default = MESSAGES.get(code, ("Error", "The request failed."))
    if request.accept_mimetypes.best == "application/json":
        return f'{{"error": "{title}"}}', code
    return render_template("errors/error.html", code=code, title=title, message=message or default), code


def register_errors(app: Flask) -> None:
    """Every HTTP error gets the desk's page; a 500 is logged by type only."""

    @app.errorhandler(CSRFError)
    def _csrf(_exc: CSRFError) -> tuple[str, int]:
        return _render(400, "The form expired or was not sent from the desk. Reload it and try again.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[str, int]:
        return _render(exc.code or 500)

    @app.errorhandler(DecryptionError)
    def _undecryptable(_exc: DecryptionError) -> tuple[str, int]:
        # Crypto-shredded (the controller's data key destroyed) or altered: say so, never show ciphertext.
        log.error("undecryptable value on %s", request.endpoint)
        return _render(
            500,
            "Personal data on this page cannot be decrypted: its data key was destroyed (crypto-shredding) or the stored value was altered."
            " Nothing was changed; `flask --app wsgi keys status` and the audit log say more.",
        )

    @app.errorhandler(InternalServerError)
    def _internal(exc: InternalServerError) -> tuple[str, int]:
        original = getattr(exc, "original_exception", None)
        # The exception type and route only: messages may carry personal data.
        log.error("unhandled %s on %s", type(original).__name__, request.endpoint)
        return _render(500)
