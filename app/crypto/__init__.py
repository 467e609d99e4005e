"""Encryption at rest (WECO §9.1(a)), the primitives: cipher, keyring, data keys, encrypted fields.

Key management (status, rotation, shredding, the `keys` commands) is app.keys, which also audit-logs it;
this package imports neither app.audit nor app.keys.
"""
