"""Configuration of DSR Desk, read from the environment."""
