"""Shared plumbing of the SQLite stores: owner-only files, WAL, versioned schemas."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from ..errors import MacaroonError

__all__ = ["SQLiteDatabase", "StoreError"]


class StoreError(MacaroonError):
    """A persistent store cannot be opened or used (bad file, newer schema, I/O error)."""


class SQLiteDatabase:
    """One SQLite file, one connection per thread, schema migrated on open.

    The file is created readable and writable by its owner only (mode
    0600); SQLite gives its WAL and shared-memory files the same mode.
    ``migrations[i]`` brings the schema from version ``i`` to ``i + 1``.
    """

    def __init__(self, path: str | os.PathLike[str], name: str, migrations: Sequence[str]) -> None:
        self.path = Path(path)
        self._name = name
        self._migrations = tuple(migrations)
        self._local = threading.local()
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open {name} at {self.path}: {exc.strerror}") from None
        os.close(fd)
        self._migrate()

    def connection(self) -> sqlite3.Connection:
        """The calling thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open {self._name}: {exc}") from None
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _migrate(self) -> None:
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > len(self._migrations):
                conn.execute("ROLLBACK")
                raise StoreError(
                    f"{self._name} schema version {version} is newer than this library knows"
                )
            for step in range(version, len(self._migrations)):
                for statement in self._migrations[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(self._migrations)}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot prepare {self._name}: {exc}") from None
