"""The comparison harness (scripts/compare_methods.py is its command line): presets, state, runs, scores, reports.

Library code raises `scripts.compare.errors.HarnessError`; the command line turns it into one line.
"""
