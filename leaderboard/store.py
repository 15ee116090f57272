"""The leaderboard's database: one SQLite row per scored submission.

Stdlib sqlite3 in WAL mode with a busy timeout, every write in one
``BEGIN IMMEDIATE`` transaction, so several processes can score at once and
none loses a row. A file scored twice against the same zoo is stored once
(UNIQUE on the file's sha256 and the zoo's weights fingerprint).

Schema versions (``PRAGMA user_version``): 1 had no ``seed`` column; 2 adds it
(nullable). `connect` migrates a version-1 file in place, its rows keeping NULL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from zoo_builder.errors import DomainError

DEFAULT_DB = "leaderboard.sqlite"
SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 60_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    version TEXT NOT NULL,
    description TEXT NOT NULL,
    task TEXT NOT NULL,
    split TEXT NOT NULL,
    all_checkpoints INTEGER NOT NULL,
    zoo_name TEXT NOT NULL,
    zoo_fingerprint TEXT NOT NULL,
    split_fingerprint TEXT NOT NULL,
    metrics TEXT NOT NULL,      -- JSON: name -> {value, ci_low, ci_high, n, n_clusters}
    symmetry TEXT NOT NULL,     -- JSON: name -> value
    bootstrap TEXT NOT NULL,    -- JSON: {seed, resamples, confidence}
    seed INTEGER,               -- the run's training seed (NULL: unseeded)
    sha256 TEXT NOT NULL,
    scored_at TEXT NOT NULL,    -- ISO 8601, UTC
    UNIQUE (sha256, zoo_fingerprint)
);
CREATE INDEX IF NOT EXISTS submissions_task ON submissions (task, split);
"""
_COLUMNS = ("id", "method", "version", "description", "task", "split", "all_checkpoints", "zoo_name",
            "zoo_fingerprint", "split_fingerprint", "metrics", "symmetry", "bootstrap", "seed", "sha256",
            "scored_at")
_JSON_COLUMNS = ("metrics", "symmetry", "bootstrap")


class StoreError(DomainError, ValueError):
    """A file is not a leaderboard database this zoobench can use; the message names it."""


def connect(path=DEFAULT_DB) -> sqlite3.Connection:
    """Open (creating if needed) the database at `path`: WAL mode, busy timeout, schema in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _use_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        with transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if not 0 <= version <= SCHEMA_VERSION:
                raise StoreError(f"{path}: leaderboard database schema version {version}, "
                                 f"expected at most {SCHEMA_VERSION}")
            for statement in filter(str.strip, SCHEMA.split(";")):  # executescript would COMMIT early
                conn.execute(statement)
            _add_missing_columns(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreError(f"{path}: not a usable leaderboard database ({e})") from None
    except BaseException:
        conn.close()
        raise
    return conn


# Columns added after version 1, with their SQL type: an older file gets them on `connect`.
_ADDED_COLUMNS = {"seed": "INTEGER"}


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Migrate a table created by an older schema (CREATE TABLE IF NOT EXISTS leaves it as it was)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(submissions)")}
    for name, sql_type in _ADDED_COLUMNS.items():
        if name not in present:
            conn.execute(f"ALTER TABLE submissions ADD COLUMN {name} {sql_type}")


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL (persistent in the file), retrying: SQLite may answer "locked" without waiting."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class transaction:  # noqa: N801 (used as a context manager, like a function)
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): takes the write lock up front."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def add_result(conn: sqlite3.Connection, result: dict) -> tuple[int, bool]:
    """Store a `score_submission` result; returns (row id, whether it is new).

    A result whose (sha256, zoo fingerprint) is already stored is not stored again.
    A result without ``seed`` (an older caller) is stored unseeded.
    """
    row = {
        "method": result["method"], "version": result["version"], "description": result["description"],
        "task": result["task"], "split": result["split"], "all_checkpoints": int(result["all_checkpoints"]),
        "zoo_name": result["zoo"]["name"], "zoo_fingerprint": result["zoo"]["weights_fingerprint"],
        "split_fingerprint": result["split_fingerprint"],
        "metrics": json.dumps(result["metrics"], sort_keys=True, allow_nan=False),
        "symmetry": json.dumps(result["symmetry"], sort_keys=True, allow_nan=False),
        "bootstrap": json.dumps(result["bootstrap"], sort_keys=True, allow_nan=False),
        "seed": result.get("seed"),
        "sha256": result["sha256"],
        "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    names = ", ".join(row)
    marks = ", ".join(f":{k}" for k in row)
    with transaction(conn):
        cur = conn.execute(f"INSERT INTO submissions ({names}) VALUES ({marks}) "
                           "ON CONFLICT (sha256, zoo_fingerprint) DO NOTHING", row)
        if cur.rowcount == 1:
            return int(cur.lastrowid), True
        return find_result(conn, row["sha256"], row["zoo_fingerprint"]), False


def find_result(conn: sqlite3.Connection, sha256: str, zoo_fingerprint: str) -> int | None:
    """Row id of the file with `sha256` scored on the zoo `zoo_fingerprint`, None if not stored."""
    found = conn.execute("SELECT id FROM submissions WHERE sha256 = ? AND zoo_fingerprint = ?",
                         (sha256, zoo_fingerprint)).fetchone()
    return None if found is None else int(found[0])


def entries(conn: sqlite3.Connection, task: str | None = None, split: str | None = None) -> list[dict]:
    """Stored rows (JSON columns decoded), optionally of one task and split, oldest first."""
    where, args = [], []
    for column, value in (("task", task), ("split", split)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    sql = f"SELECT {', '.join(_COLUMNS)} FROM submissions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = conn.execute(sql + " ORDER BY id", args).fetchall()
    out = []
    for r in rows:
        d = dict(zip(_COLUMNS, r, strict=True))
        for c in _JSON_COLUMNS:
            d[c] = json.loads(d[c])
        d["all_checkpoints"] = bool(d["all_checkpoints"])
        out.append(d)
    return out
