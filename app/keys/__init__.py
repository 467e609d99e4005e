"""Key management (WECO §9.1(a)): key status, re-wrapping, re-encryption, crypto-shredding, the `keys` commands.

Core: built on the crypto primitives (app.crypto: cipher, keyring, data keys,
encrypted fields) and writing every operation to the audit log (app.audit).
"""
