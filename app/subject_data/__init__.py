"""Execution of data-subject requests under a controller's instruction: find, export, erase and rectify (runs of the deletion engine), restrict, close."""
