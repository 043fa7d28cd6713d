"""The journal tests run against both backends.

Fixtures:

* ``store``: a fresh journal location, once per backend (``sqlite``: a file in
  ``tmp_path``; ``postgresql``: a campaign name of its own on the session's
  PostgreSQL, see ``postgresql_server`` in tests/conftest.py). Its
  :class:`~journal_store.Store` opens campaigns and journals there and reads or sets
  rows straight in the store (what a run, or a crash, would have left).
* ``pg_store``: the PostgreSQL one only (the tests of several workers).
* ``pg_database``: a PostgreSQL store in a database of its own, for a test that
  changes the shared tables themselves (as an earlier release left them).
"""

from __future__ import annotations

import itertools
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from journal_store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store("sqlite", tmp_path / "c.db")
    return Store(
        "postgresql",
        request.getfixturevalue("postgresql_dsn"),
        request.getfixturevalue("campaign_name"),
    )


@pytest.fixture
def pg_store(postgresql_dsn: str, campaign_name: str) -> Store:
    return Store("postgresql", postgresql_dsn, campaign_name)


_databases = itertools.count()


@pytest.fixture
def pg_database(postgresql_dsn: str, campaign_name: str) -> Iterator[Store]:
    name = f"own_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgresql_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    try:
        own = urllib.parse.urlsplit(postgresql_dsn)._replace(path=f"/{name}").geturl()
        yield Store("postgresql", own, campaign_name)
    finally:
        with psycopg.connect(postgresql_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[arg-type]
