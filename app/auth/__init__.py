"""Staff access: users, passwords, TOTP, sessions, roles (WECO §9.1(b), §9.2)."""
