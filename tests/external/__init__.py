"""Other projects' pinned test suites, run with the stdlib and with cfutures (see suites.py)."""
