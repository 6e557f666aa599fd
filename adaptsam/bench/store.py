"""The results store: SQLite, one row per cell keyed by the hash of its canonical config.

Every state change is one transaction (WAL journal, ``synchronous=FULL``), so a bench killed with
``kill -9`` leaves only whole rows: finished cells stay finished, and a cell that was running when the
process died is simply run again on resume. Only the driver process writes (the Ray executor ships results
back to it), and only one driver at a time: :class:`BenchLock` holds an exclusive ``flock`` on
``OUT/.lock`` for the whole run, so a second bench on the same folder stops at once, naming the first.

Speeds are stored apart from cells, per **timing run** (one per bench invocation that times): a timing run
records the machine it ran on and is marked complete only when every graph was timed, and the report reads
the latest complete one, so figures of two runs are never mixed in one table.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptsam.bench.spec import Cell
from adaptsam.errors import BusyError, DataError

STORE_NAME = "results.sqlite"
LOCK_NAME = ".lock"

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
CREATE TABLE IF NOT EXISTS timing_runs (
    run_id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'abandoned')),
    machine TEXT NOT NULL,
    config TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS speeds (
    run_id TEXT NOT NULL REFERENCES timing_runs(run_id),
    key TEXT NOT NULL REFERENCES cells(key),
    figures TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
"""
CELL_COLUMNS = {"key", "label", "config", "status", "metrics", "timings", "environment", "error", "attempts",
                "created", "updated"}


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
    speed: dict[str, Any] = field(default_factory=dict)  # from the latest complete timing run, if it has this cell

    @property
    def cell(self) -> Cell:
        return Cell.from_canonical(self.config)


class ResultStore:
    """``OUT/results.sqlite``: register cells, claim them, record their results, read them back."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not self.path.is_file():
            raise DataError(f"{self.path} is a folder, expected the bench's results store (an SQLite file); "
                            f"remove it or choose another --out.")
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            self._check_schema()
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise DataError(f"{self.path} is not an adaptsam results store ({exc}); expected the SQLite file an "
                            f"adaptsam bench writes. Move it away or choose another --out.") from exc

    def _check_schema(self) -> None:
        """An existing database must be a bench store: other SQLite files are refused, never written into."""
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(cells)")} if "cells" in tables else set()
        if not columns >= CELL_COLUMNS:
            raise sqlite3.DatabaseError(f"it holds tables {sorted(tables)} but no adaptsam cells table")

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
        run = self.latest_timing_run()
        if run is not None:
            speeds = self.speeds(run["run_id"])
            for row in rows:
                row.speed = speeds.get(row.key, {})
        return rows

    def set_grid(self, keys: Iterable[str]) -> None:
        """Remember which cells the latest bench on this folder asked for (its grid)."""
        self.set_meta("grid", list(keys))

    def grid_rows(self) -> list[Row]:
        """The rows of the latest bench's grid (every row for a store without one).

        The store keeps every result it ever held, but a report or a timing phase shows the latest grid only:
        rows of an earlier grid (another budget, a plugin's older version) would otherwise join this grid's
        rows of the same configuration as if they were more seeds.
        """
        return self.rows(self.meta("grid"))

    def statuses(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, status FROM cells").fetchall())

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- timing runs ------------------------------------------------------------------------------------

    def start_timing_run(self, machine: dict[str, Any], config: dict[str, Any]) -> str:
        """A new timing run (earlier unfinished ones are marked abandoned); returns its id."""
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        with self._transaction() as conn:
            conn.execute("UPDATE timing_runs SET status='abandoned' WHERE status='running'")
            conn.execute("INSERT INTO timing_runs (run_id, status, machine, config, started) VALUES (?, 'running', ?, "
                         "?, ?)", (run_id, json.dumps(machine, default=str), json.dumps(config), time.time()))
        return run_id

    def finish_timing_run(self, run_id: str, speeds: dict[str, dict[str, Any]]) -> None:
        """Store every cell's speed and mark the run complete, in one transaction."""
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO speeds (run_id, key, figures) VALUES (?, ?, ?)",
                             [(run_id, key, json.dumps(figures)) for key, figures in speeds.items()])
            conn.execute("UPDATE timing_runs SET status='complete', finished=? WHERE run_id=?", (time.time(), run_id))

    def latest_timing_run(self) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT run_id, machine, config, started, finished FROM timing_runs WHERE "
                                 "status='complete' ORDER BY finished DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return {"run_id": row[0], "machine": json.loads(row[1]), "config": json.loads(row[2]), "started": row[3],
                "finished": row[4]}

    def speeds(self, run_id: str) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in
                self._conn.execute("SELECT key, figures FROM speeds WHERE run_id=?", (run_id,))}

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


class BenchLock:
    """``with BenchLock(out):`` — this process owns ``out``'s store until the block ends (``flock``, released by
    the kernel when the process dies, so a killed bench never leaves a stale lock). The lock file names its
    holder so the refusal can say who it is."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.path = Path(folder) / LOCK_NAME
        self._handle: Any = None

    @classmethod
    def check_free(cls, folder: str | os.PathLike[str]) -> None:
        """Raise :class:`BusyError` now if another process holds ``folder`` (before any slow set-up)."""
        if (Path(folder) / LOCK_NAME).is_file():
            with cls(folder):
                pass

    def __enter__(self) -> BenchLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise BusyError(f"{self.path.parent} is in use by another adaptsam bench ({holder}); wait for it to "
                            f"finish, stop it, or give this bench another --out.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                     f"{' '.join(sys.argv[:6])}")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
