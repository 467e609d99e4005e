"""Data-subject requests: intake, the 24-hour forward, the sweeper and the instruction gate."""
