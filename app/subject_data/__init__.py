"""Execution of data-subject requests under a controller's instruction: find, export, erase, rectify, restrict, close."""
