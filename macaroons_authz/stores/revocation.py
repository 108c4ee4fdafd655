"""Revoked tokens: stores and a change feed.

A token is revoked by its *token id*, the UUID of its nonce
(:func:`token_id`). Attenuating a token keeps its nonce, so revoking a token
revokes every token attenuated from it; a discharge bound to a revoked token
is useless, since it only works beside that token.

Stores keep every revocation with a sequence number, so long-running
verifiers can follow :meth:`RevocationStore.revoked_since` to drop cached
verifications.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Protocol, runtime_checkable

import attrs

from ..macaroon import Macaroon
from ._sqlite import SQLiteDatabase, SQLiteStore, StoreError

__all__ = [
    "MemoryRevocationStore",
    "Revocation",
    "RevocationStore",
    "SQLiteRevocationStore",
    "token_id",
]


def token_id(token: Macaroon | bytes) -> str:
    """The revocation handle of a token: the UUID of its nonce, as a string.

    It is the same for a token and every attenuation of it, and reveals
    nothing that lets anyone use the token.
    """
    m = token if isinstance(token, Macaroon) else Macaroon.decode(token)
    return str(m.nonce.uuid)


@attrs.frozen
class Revocation:
    """One revocation: which token, why, when, and its place in the feed."""

    token_id: str
    reason: str
    revoked_at: float
    seq: int


@runtime_checkable
class RevocationStore(Protocol):
    """Where revocations are kept."""

    def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        """Revoke *token_id* durably; ``True`` if it was not revoked before."""
        ...

    def is_revoked(self, token_id: str) -> bool:
        """Whether *token_id* is revoked."""
        ...

    def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        """Revocations after *cursor* (0 for all), oldest first, and the new cursor."""
        ...


def _check_id(token_id: object) -> str:
    if not isinstance(token_id, str) or not token_id:
        raise TypeError("token_id must be a non-empty str")
    return token_id


class MemoryRevocationStore:
    """Revocations held in memory, for one process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Revocation] = {}
        self._log: list[Revocation] = []

    def __repr__(self) -> str:
        return f"<MemoryRevocationStore revoked={len(self._log)}>"

    def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        """Revoke *token_id*; ``True`` if it was not revoked before."""
        _check_id(token_id)
        with self._lock:
            if token_id in self._by_id:
                return False
            entry = Revocation(
                token_id, reason, time.time() if at is None else at, len(self._log) + 1
            )
            self._by_id[token_id] = entry
            self._log.append(entry)
            return True

    def is_revoked(self, token_id: str) -> bool:
        """Whether *token_id* is revoked."""
        return token_id in self._by_id

    def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        """Revocations after *cursor*, oldest first, and the new cursor."""
        with self._lock:
            entries = self._log[max(cursor, 0) :]
            return entries, len(self._log)


_REVOCATION_SCHEMA = (
    """
    CREATE TABLE revocations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        token_id TEXT NOT NULL UNIQUE,
        reason TEXT NOT NULL,
        revoked_at REAL NOT NULL
    )
    """,
)


class SQLiteRevocationStore(SQLiteStore):
    """Revocations in a SQLite file, shared by the processes of one machine.

    The file is owner-only (0600) and in WAL mode; every revocation is one
    transaction, committed before :meth:`revoke` returns, so a crash leaves
    it either recorded or not, never half-written. Each thread that uses it
    gets a connection of its own; :meth:`close` (or leaving a ``with``
    block) closes them all.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (creating and migrating as needed) the store at *path*."""
        self._db = SQLiteDatabase(path, "revocation store", _REVOCATION_SCHEMA)

    def __repr__(self) -> str:
        return f"<SQLiteRevocationStore {str(self._db.path)!r}>"

    def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        """Revoke *token_id* durably; ``True`` if it was not revoked before."""
        _check_id(token_id)
        try:
            cur = self._db.connection().execute(
                "INSERT OR IGNORE INTO revocations (token_id, reason, revoked_at) VALUES (?, ?, ?)",
                (token_id, reason, time.time() if at is None else at),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record the revocation: {exc}") from None
        return cur.rowcount == 1

    def is_revoked(self, token_id: str) -> bool:
        """Whether *token_id* is revoked."""
        try:
            row = (
                self._db.connection()
                .execute("SELECT 1 FROM revocations WHERE token_id = ?", (token_id,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read revocations: {exc}") from None
        return row is not None

    def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        """Revocations after *cursor*, oldest first, and the new cursor."""
        try:
            rows = (
                self._db.connection()
                .execute(
                    "SELECT token_id, reason, revoked_at, seq FROM revocations "
                    "WHERE seq > ? ORDER BY seq",
                    (cursor,),
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read revocations: {exc}") from None
        entries = [Revocation(*row) for row in rows]
        return entries, (entries[-1].seq if entries else cursor)
