"""A journal location on one backend, for the tests (see conftest.py)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from aicc_async.bulk import Campaign, CampaignKind
from aicc_async.bulk.journal import open_journal
from aicc_async.bulk.journal.rules import Journal, Mode

#: key -> (state, code, description, payload)
Rows = dict[str, tuple[str, "str | None", "str | None", str]]


@attrs.frozen
class Store:
    """Where one test's journal lives, on one backend."""

    backend: str
    location: str | Path
    campaign: str | None = None

    def open_campaign(self, kind: CampaignKind | None = None, **options: Any) -> Campaign:
        return Campaign(self.location, kind, campaign=self.campaign, **options)

    async def open(
        self, kind: str | None = "voice_notification", mode: Mode = "run", **options: Any
    ) -> Journal:
        return await open_journal(self.location, kind, mode=mode, campaign=self.campaign, **options)

    def _sql(self, text: str) -> str:
        """``text`` (over table ``rows``) for this backend's raw connection."""
        if self.backend == "sqlite":
            return text
        return text.replace("?", "%s").replace("FROM rows", "FROM aicc_rows").replace(
            "UPDATE rows", "UPDATE aicc_rows"
        ) + (" AND campaign = %s" if " WHERE " in text else " WHERE campaign = %s")

    def query(self, text: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a SELECT (or UPDATE) over this campaign's ``rows``, committed."""
        if self.backend == "sqlite":
            with contextlib.closing(sqlite3.connect(self.location)) as db, db:
                return db.execute(text, tuple(args)).fetchall()
        import psycopg

        with psycopg.connect(str(self.location), autocommit=True) as conn:
            cur = conn.execute(self._sql(text), (*args, self.campaign))  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def rows(self) -> Rows:
        return {
            key: (state, code, description, payload)
            for key, state, code, description, payload in self.query(
                "SELECT key, state, code, description, payload FROM rows"
            )
        }

    def set_state(self, keys: Iterable[str], state: str, code: str | None = None) -> None:
        for key in keys:
            self.query("UPDATE rows SET state = ?, code = ? WHERE key = ?", (state, code, key))
