"""Encryption at rest (WECO §9.1(a)): keyring, data keys, encrypted fields, rotation and shredding."""
