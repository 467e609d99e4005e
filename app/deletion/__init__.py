"""The one deletion engine: every erasure, retention run and termination is a run with an authority, a scope and a report.

- `models`: the run (authority kind + id, scope, action, state, encrypted parameters, report).
- `service`: start / step / advance (the batch-job shape) / progress / sweep; the doorbell; its errors.
- `plan`: the stores of each action and the plan a run fixes before changing anything.
- `stores`: what a phase is (select a batch, the hold check, apply); `holds`: the one hold check.
- `authorities`: the hooks a domain registers for its authority kind (the DSR: app.subject_data.erasure).
- `messages`, `records`, `purge`: the stores (messages; tickets, outbox, quarantine; whole tickets).
- `scope`: a subject's tickets and messages by blind index; `rewrite`: the identifiers in texts.
- `report`: the report's shape; `sqlite`: the database's own copies (secure_delete, WAL truncation).

Core layer: imports tickets, mail, controllers and the platform, never a domain.
"""
