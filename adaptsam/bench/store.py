"""The results store: SQLite, one row per cell keyed by the hash of its canonical config.

Every state change is one transaction (WAL journal, ``synchronous=FULL``), so a bench killed with
``kill -9`` leaves only whole rows: finished cells stay finished, and a cell that was running when the
process died is simply run again on resume. Only the driver process writes (the Ray executor ships results
back to it).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptsam.bench.spec import Cell

STATUSES = ("pending", "running", "done", "failed", "skipped")
SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed', 'skipped')),
    metrics TEXT,
    timings TEXT,
    environment TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class CellResult:
    """What a finished cell reports back to the store."""

    key: str
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("done", "failed", "skipped"):
            raise ValueError(f"A finished cell is done, failed or skipped, got {self.status!r}.")


@dataclass
class Row:
    key: str
    label: str
    config: dict[str, Any]
    status: str
    metrics: dict[str, Any]
    timings: dict[str, float]
    environment: dict[str, Any]
    error: str | None
    attempts: int

    @property
    def cell(self) -> Cell:
        return Cell.from_canonical(self.config)


class ResultStore:
    """``OUT/results.sqlite``: register cells, claim them, record their results, read them back."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self):
        return _Transaction(self._conn)

    def register(self, cells: Iterable[Cell]) -> int:
        """Insert cells not seen before as pending; returns how many were new."""
        now = time.time()
        with self._transaction() as conn:
            before = conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
            conn.executemany(
                "INSERT OR IGNORE INTO cells (key, label, config, status, created, updated) "
                "VALUES (?, ?, ?, 'pending', ?, ?)",
                [(c.key, c.label, json.dumps({**c.canonical(), "adapter_label": c.adapter_label}, sort_keys=True),
                  now, now) for c in cells])  # the label rides along for the report; it's not in the key
            return conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0] - before

    def claim(self, key: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE cells SET status='running', attempts=attempts+1, updated=? WHERE key=?",
                         (time.time(), key))

    def finish(self, result: CellResult) -> None:
        """Record a cell's whole result in one transaction."""
        with self._transaction() as conn:
            updated = conn.execute(
                "UPDATE cells SET status=?, metrics=?, timings=?, environment=?, error=?, updated=? WHERE key=?",
                (result.status, json.dumps(result.metrics, default=str), json.dumps(result.timings),
                 json.dumps(result.environment, default=str), result.error, time.time(), result.key)).rowcount
            if updated != 1:
                raise KeyError(f"Cell {result.key} is not registered in {self.path}.")

    def reset(self, statuses: Iterable[str]) -> int:
        """Put cells with these statuses back to pending (``--retry-failed``; interrupted ``running`` cells)."""
        statuses = list(statuses)
        with self._transaction() as conn:
            return conn.execute(
                f"UPDATE cells SET status='pending', updated=? WHERE status IN ({','.join('?' * len(statuses))})",
                (time.time(), *statuses)).rowcount

    def rows(self, keys: Iterable[str] | None = None) -> list[Row]:
        query = "SELECT key, label, config, status, metrics, timings, environment, error, attempts FROM cells"
        rows = [self._row(r) for r in self._conn.execute(query + " ORDER BY created, label")]
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r.key in wanted]
        return rows

    def statuses(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, status FROM cells").fetchall())

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    @staticmethod
    def _row(r: tuple) -> Row:
        def load(text: str | None) -> dict:
            return json.loads(text) if text else {}

        return Row(key=r[0], label=r[1], config=json.loads(r[2]), status=r[3], metrics=load(r[4]),
                   timings=load(r[5]), environment=load(r[6]), error=r[7], attempts=r[8])


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
