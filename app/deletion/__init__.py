"""The one deletion engine: every erasure, retention run and termination is a run with an authority, a scope and a report."""
