"""The route x role matrix: who may call each (endpoint, method). `tests/web/test_rbac.py` enforces it.

A new route needs a line here (and a `@rbac.require(...)`, `@rbac.public` or
`@rbac.login_step` on its view), or the suite fails. PUBLIC: anyone, no login.
LOGIN: the login steps themselves. Otherwise the set of roles allowed; every
other role gets a 403, and a visitor who is not logged in is sent to /login.
"""

from __future__ import annotations

PUBLIC = "public"
LOGIN = "login"

ALL_STAFF = frozenset({"agent", "privacy_officer", "admin", "auditor"})
ADMIN = frozenset({"admin"})
READ_CONTROLLERS = frozenset({"agent", "privacy_officer", "admin"})
TICKETS = frozenset({"agent", "privacy_officer"})
PRIVACY = frozenset({"privacy_officer"})
AUDITOR = frozenset({"auditor"})

ROUTE_MATRIX: dict[tuple[str, str], str | frozenset[str]] = {
    ("static", "GET"): PUBLIC,
    ("main.healthz", "GET"): PUBLIC,
    ("subprocessors.public", "GET"): PUBLIC,
    ("main.index", "GET"): ALL_STAFF,
    # login steps
    ("auth.login", "GET"): LOGIN,
    ("auth.login", "POST"): LOGIN,
    ("auth.mfa", "GET"): LOGIN,
    ("auth.mfa", "POST"): LOGIN,
    ("auth.enrol", "GET"): LOGIN,
    ("auth.enrol", "POST"): LOGIN,
    ("auth.logout", "POST"): LOGIN,
    # one's own account
    ("auth.account", "GET"): ALL_STAFF,
    ("auth.change_password", "POST"): ALL_STAFF,
    ("auth.recovery_codes", "POST"): ALL_STAFF,
    ("auth.sessions", "GET"): ALL_STAFF,
    ("auth.end_session", "POST"): ALL_STAFF,
    # staff administration
    ("admin.users", "GET"): ADMIN,
    ("admin.create_user", "GET"): ADMIN,
    ("admin.create_user", "POST"): ADMIN,
    ("admin.edit_user", "GET"): ADMIN,
    ("admin.edit_user", "POST"): ADMIN,
    ("admin.disable_user", "POST"): ADMIN,
    ("admin.enable_user", "POST"): ADMIN,
    ("admin.reset_mfa", "POST"): ADMIN,
    ("admin.reset_password", "POST"): ADMIN,
    ("admin.enrolment_code", "POST"): ADMIN,
    ("admin.unlock_user", "POST"): ADMIN,
    # audit log: the auditor only
    ("audit_log.index", "GET"): AUDITOR,
    # controllers: read by those who work for them (agents: assigned ones only), managed by admins
    ("controllers.index", "GET"): READ_CONTROLLERS,
    ("controllers.show", "GET"): READ_CONTROLLERS,
    ("controllers.create", "GET"): ADMIN,
    ("controllers.create", "POST"): ADMIN,
    ("controllers.edit", "GET"): ADMIN,
    ("controllers.edit", "POST"): ADMIN,
    # helpdesk (issue 5): agents for their controllers, privacy officers
    ("tickets.index", "GET"): TICKETS,
    ("tickets.triage", "GET"): TICKETS,
    ("tickets.queue", "GET"): TICKETS,
    ("tickets.search", "GET"): TICKETS,
    ("tickets.search", "POST"): TICKETS,
    ("tickets.show", "GET"): TICKETS,
    ("tickets.download", "GET"): TICKETS,
    ("tickets.assign", "POST"): TICKETS,
    ("tickets.note", "POST"): TICKETS,
    ("tickets.reply", "POST"): TICKETS,
    ("tickets.status", "POST"): TICKETS,
    ("tickets.upload", "POST"): TICKETS,
    ("tickets.move", "POST"): TICKETS,  # in practice unscoped roles only: an agent gets a 404
    # mail quarantine: privacy officers
    ("quarantine.index", "GET"): PRIVACY,
    ("quarantine.release", "POST"): PRIVACY,
    ("quarantine.delete", "POST"): PRIVACY,
    # data-subject requests (issue 6): privacy officers; marking a ticket as a DSR: whoever works the ticket
    ("dsr.dashboard", "GET"): PRIVACY,
    ("dsr.show", "GET"): PRIVACY,
    ("dsr.create", "GET"): TICKETS,
    ("dsr.create", "POST"): TICKETS,
    ("dsr.route", "POST"): PRIVACY,
    ("dsr.missed_reason", "POST"): PRIVACY,
    ("dsr.confirm", "POST"): PRIVACY,
    ("dsr.flag", "POST"): PRIVACY,
    ("dsr.reply", "POST"): PRIVACY,
    ("dsr.standing", "POST"): PRIVACY,
    ("dsr.dismiss", "POST"): PRIVACY,
    # a communication that did not reach its controller, passed on another way (Pexgle §11.2, issue 11 item 4)
    ("dsr.passed_on", "POST"): PRIVACY,
    # executing a request under the controller's instruction (issue 6, items 7-10): privacy officers
    ("subject_data.start", "POST"): PRIVACY,
    ("subject_data.restrict_data", "POST"): PRIVACY,
    ("subject_data.lift", "POST"): PRIVACY,
    ("subject_data.close", "POST"): PRIVACY,
    ("subject_data.run", "GET"): PRIVACY,
    ("subject_data.token", "POST"): PRIVACY,
    ("subject_data.download", "POST"): PRIVACY,
    # the export handed to the controller (issue 13 item 4): sent by privacy officers, opened by the controller's contact
    ("subject_data.send", "POST"): PRIVACY,
    ("subject_data.link", "GET"): PUBLIC,
    ("subject_data.link", "POST"): PUBLIC,
    ("subject_data.link_download", "POST"): PUBLIC,
    # retention (issue 14): the page for privacy officers and admins; holds by privacy officers, policies by admins
    ("retention.index", "GET"): frozenset({"privacy_officer", "admin"}),
    ("retention.add_hold", "POST"): PRIVACY,
    ("retention.lift_hold", "POST"): PRIVACY,
    ("retention.change_policy", "POST"): ADMIN,
    ("retention.withdraw_policy", "POST"): ADMIN,
}

# URL arguments that name an object holding (or leading to) a requester's data: every route taking one of them
# is walked with a restricted object as each role (tests/web/test_restricted_routes.py, issue 12 item 10).
OBJECT_ARGS = frozenset({"ticket_id", "attachment_id", "message_id", "dsr_id", "instruction_id", "suggestion_id", "restriction_id", "run_id", "export_id"})
