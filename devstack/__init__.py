"""Throw-away daemons for tests and benchmarks: a PostgreSQL cluster, a private LXD server,
region and rack processes.  Free of pytest, so `bench/` and `tests/fixtures/` share it.

Everything listens on 127.0.0.1 only and is stopped by the PID it started.
"""
