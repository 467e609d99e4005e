"""The controllers: the client companies (GDPR sense) and their contacts."""
