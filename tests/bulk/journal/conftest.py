"""The journal tests run against both backends.

Fixtures:

* ``store``: a fresh journal location, once per backend (``sqlite``: a file in
  ``tmp_path``; ``postgresql``: a campaign name of its own on the session's
  PostgreSQL, see ``postgresql_server`` in tests/conftest.py). Its
  :class:`~journal_store.Store` opens campaigns and journals there and reads or sets
  rows straight in the store (what a run, or a crash, would have left).
* ``pg_store``: the PostgreSQL one only (the tests of several workers).
"""

from __future__ import annotations

from pathlib import Path

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
