"""Shared plumbing of the SQLite stores: owner-only files, WAL, versioned schemas."""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from ..errors import MacaroonError

__all__ = ["SQLiteDatabase", "SQLiteStore", "StoreError"]


class StoreError(MacaroonError):
    """A persistent store cannot be opened or used (bad file, newer schema, I/O error)."""


class SQLiteDatabase:
    """One SQLite file, one connection per thread, schema migrated on open.

    The file is created readable and writable by its owner only (mode
    0600); SQLite gives its WAL and shared-memory files the same mode.
    ``migrations[i]`` brings the schema from version ``i`` to ``i + 1``.

    Every connection opened is tracked, so :meth:`close` closes them all,
    whichever thread opened them. A connection whose thread has ended is
    closed when the next one is opened, so a store used from short-lived
    threads holds at most one connection per live thread.
    """

    def __init__(self, path: str | os.PathLike[str], name: str, migrations: Sequence[str]) -> None:
        self.path = Path(path)
        self._name = name
        self._migrations = tuple(migrations)
        self._local = threading.local()
        self._lock = threading.Lock()
        # Each connection beside the thread that uses it (held weakly: a
        # thread object that is gone has ended).
        self._open: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._closed = False
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open {name} at {self.path}: {exc.strerror}") from None
        os.close(fd)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def connection(self) -> sqlite3.Connection:
        """The calling thread's connection.

        Raises:
            StoreError: the database cannot be opened, or was closed.
        """
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._closed:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreError(f"the {self._name} is closed")
            ended = [c for t, c in self._open if not _alive(t)]
            self._open = [(t, c) for t, c in self._open if _alive(t)]
        for old in ended:
            old.close()
        # check_same_thread=False only so that close() can close the
        # connections of other threads: each thread uses its own.
        conn = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open {self._name}: {exc}") from None
        with self._lock:
            if self._closed:  # closed meanwhile
                conn.close()
                raise StoreError(f"the {self._name} is closed")
            self._open.append((weakref.ref(threading.current_thread()), conn))
        return conn

    def close(self) -> None:
        """Close every connection, in every thread; using the store afterwards is a StoreError."""
        with self._lock:
            self._closed = True
            connections, self._open = self._open, []
        for _, conn in connections:
            conn.close()

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


def _alive(thread: weakref.ref[threading.Thread]) -> bool:
    t = thread()
    return t is not None and t.is_alive()


class SQLiteStore:
    """What the SQLite keyring and revocation store share: closing, as a context manager."""

    _db: SQLiteDatabase

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this store opened, in every thread.

        A store used after it is closed raises
        :class:`~macaroons_authz.StoreError`.
        """
        self._db.close()
