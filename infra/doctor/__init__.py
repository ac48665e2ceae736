"""``tunestack doctor``: live, read-only pre-flight checks of a spec's project (or local stack)."""
