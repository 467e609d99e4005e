"""Retention: policies per data category, legal holds, and the scheduled runs of the deletion engine they drive.

- `periods`: the categories, their defaults (period, event, action, legal basis) and the due time (pure).
- `models`: policy versions, legal holds, the ledger of runs.
- `policies`: the effective policy of a category for a controller; changes, versioned and audited.
- `holds`: placing and lifting legal holds; the check the engine asks for every item (`app.deletion.holds`).
- `runner`: a run (dry or real): what is due per category and controller, the engine runs, the ledger.
- `setup`: registration at app creation; `commands`: `flask --app wsgi retention ...`.

Domain layer, independent of the DSR domain: it reaches the engine through its registries only.
"""
