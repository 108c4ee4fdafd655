"""Signing keys by key id, with rotation.

A verifier finds a token's root key by the KID in its nonce. A keyring
holds several keys at once so they can be rotated: the *current* key mints
new tokens; older keys keep verifying the tokens they minted until they are
removed. Retiring a key stops it from minting but not from verifying.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Protocol, runtime_checkable

import attrs

from .. import crypto
from ..errors import MacaroonError
from ._sqlite import SQLiteDatabase, SQLiteStore, StoreError

__all__ = [
    "Keyring",
    "KeyringError",
    "MemoryKeyring",
    "SQLiteKeyring",
    "SigningKey",
    "UnknownKeyError",
]


class KeyringError(MacaroonError, ValueError):
    """A keyring cannot do what was asked (a KID clash, no key to mint with)."""


class UnknownKeyError(KeyringError, LookupError):
    """The keyring holds no key with this KID."""


#: The shortest root key a keyring accepts. HMAC pads shorter keys with
#: zeros, so ``key`` and ``key + b"\x00"`` would be the same key.
MIN_KEY_SIZE = crypto.KEY_SIZE


def check_root_key(key: object) -> bytes:
    """Return *key* if it is bytes of at least :data:`MIN_KEY_SIZE`; raise otherwise."""
    crypto.check_key(key, "key")
    assert isinstance(key, bytes)
    if len(key) < MIN_KEY_SIZE:
        raise KeyringError(f"root keys must be at least {MIN_KEY_SIZE} bytes, not {len(key)}")
    return key


def _kid_of(key: bytes, kid: bytes | None) -> bytes:
    """What a keyring's ``add`` files *key* under: *kid*, or :func:`kid_for_key` of it."""
    check_root_key(key)
    return crypto.kid_for_key(key) if kid is None else crypto.check_key(kid, "kid")


@attrs.frozen
class SigningKey:
    """A root key and its KID. The key itself never appears in ``repr``."""

    kid: bytes
    key: bytes = attrs.field(repr=False)
    retired: bool = False


@runtime_checkable
class Keyring(Protocol):
    """What a :class:`~macaroons_authz.Verifier` needs: a key for a KID."""

    def key_for(self, kid: bytes) -> bytes | None:
        """The root key for *kid*, or ``None`` if there is none."""
        ...


class MemoryKeyring:
    """A thread-safe keyring held in memory.

    >>> ring = MemoryKeyring()
    >>> kid = ring.generate()
    >>> ring.current().kid == kid
    True
    """

    def __init__(self, keys: list[bytes] | tuple[bytes, ...] = ()) -> None:
        """A keyring holding *keys* (KIDs by :func:`~macaroons_authz.kid_for_key`)."""
        # Writers replace the dict under the lock and never change a dict
        # once it is published, so readers (every verification) take no
        # lock: they read one reference, which is atomic.
        self._lock = threading.Lock()
        self._keys: dict[bytes, SigningKey] = {}
        for key in keys:
            self.add(key)

    def __repr__(self) -> str:
        kids = ", ".join(k.hex() for k in self._keys)
        return f"<MemoryKeyring kids=[{kids}]>"

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: bytes, kid: bytes | None = None) -> bytes:
        """Add *key* as the current key; return its KID.

        Raises:
            KeyringError: another key already has this KID.
        """
        kid = _kid_of(key, kid)
        with self._lock:
            keys = dict(self._keys)
            existing = keys.pop(kid, None)
            if existing is not None and not crypto.equal(existing.key, key):
                raise KeyringError(f"KID {kid.hex()} is already used by another key")
            # Re-inserting moves the key to the end: the newest key is current.
            keys[kid] = SigningKey(kid, key)
            self._keys = keys
        return kid

    def generate(self) -> bytes:
        """Add a new random key as the current key (a rotation); return its KID."""
        return self.add(crypto.new_signing_key())

    def key_for(self, kid: bytes) -> bytes | None:
        """The root key for *kid*, retired or not, or ``None``."""
        entry = self._keys.get(kid)
        return None if entry is None else entry.key

    def current(self) -> SigningKey:
        """The newest key that is not retired: the one to mint with.

        Raises:
            KeyringError: every key is retired, or there is none.
        """
        for entry in reversed(self._keys.values()):
            if not entry.retired:
                return entry
        raise KeyringError("the keyring has no key to mint with")

    def retire(self, kid: bytes) -> None:
        """Stop minting with *kid*; tokens it minted still verify until :meth:`remove`.

        Raises:
            UnknownKeyError: no key has this KID.
        """
        with self._lock:
            entry = self._keys.get(kid)
            if entry is None:
                raise UnknownKeyError(f"unknown KID {kid.hex()}")
            self._keys = {**self._keys, kid: attrs.evolve(entry, retired=True)}

    def remove(self, kid: bytes) -> None:
        """Forget *kid*: every token minted with it stops verifying."""
        with self._lock:
            keys = dict(self._keys)
            keys.pop(kid, None)
            self._keys = keys

    def kids(self) -> list[SigningKey]:
        """Every key, oldest first (keys are hidden from ``repr``)."""
        return list(self._keys.values())


_KEYRING_SCHEMA = (
    """
    CREATE TABLE keys (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kid BLOB NOT NULL UNIQUE,
        key BLOB NOT NULL,
        retired INTEGER NOT NULL DEFAULT 0
    )
    """,
)


class SQLiteKeyring(SQLiteStore):
    """A keyring in a SQLite file, shared by the processes of one machine.

    The file is created readable by its owner only (mode 0600), because it
    holds root keys in clear: protect it as you would a private key. An
    existing file that others may read or write is refused. Its methods are
    those of :class:`MemoryKeyring`.

    Each thread that uses it gets a connection of its own; :meth:`close`
    (or leaving a ``with`` block) closes them all::

        with SQLiteKeyring(path) as keyring:
            verifier = Verifier(keyring)
            ...
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (creating and migrating as needed) the keyring at *path*.

        Raises:
            KeyringError: the file's mode lets group or others at it.
            StoreError: the file cannot be opened as a keyring.
        """
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            mode = 0
        except OSError as exc:
            raise StoreError(f"cannot open keyring at {path}: {exc.strerror}") from None
        if mode & 0o077:
            raise KeyringError(
                f"{path} is open to group or others (mode {mode & 0o777:o}); "
                "it holds keys in clear: chmod 600 it"
            )
        self._db = SQLiteDatabase(path, "keyring", _KEYRING_SCHEMA)

    def __repr__(self) -> str:
        return f"<SQLiteKeyring {str(self._db.path)!r}>"

    def __len__(self) -> int:
        return int(self._query("SELECT count(*) FROM keys").fetchone()[0])

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.connection().execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"keyring: {exc}") from None

    def add(self, key: bytes, kid: bytes | None = None) -> bytes:
        """Add *key* as the current key; return its KID.

        Raises:
            KeyringError: another key already has this KID.
        """
        kid = _kid_of(key, kid)
        conn = self._db.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT key FROM keys WHERE kid = ?", (kid,)).fetchone()
            if row is not None and not crypto.equal(bytes(row[0]), key):
                conn.execute("ROLLBACK")
                raise KeyringError(f"KID {kid.hex()} is already used by another key")
            # Re-inserting gives the key the newest sequence number: it is current.
            conn.execute("DELETE FROM keys WHERE kid = ?", (kid,))
            conn.execute("INSERT INTO keys (kid, key) VALUES (?, ?)", (kid, key))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"keyring: {exc}") from None
        return kid

    def generate(self) -> bytes:
        """Add a new random key as the current key (a rotation); return its KID."""
        return self.add(crypto.new_signing_key())

    def key_for(self, kid: bytes) -> bytes | None:
        """The root key for *kid*, retired or not, or ``None``."""
        row = self._query("SELECT key FROM keys WHERE kid = ?", (kid,)).fetchone()
        return None if row is None else bytes(row[0])

    def current(self) -> SigningKey:
        """The newest key that is not retired: the one to mint with.

        Raises:
            KeyringError: every key is retired, or there is none.
        """
        row = self._query(
            "SELECT kid, key FROM keys WHERE retired = 0 ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise KeyringError("the keyring has no key to mint with")
        return SigningKey(bytes(row[0]), bytes(row[1]))

    def retire(self, kid: bytes) -> None:
        """Stop minting with *kid*; tokens it minted still verify until :meth:`remove`.

        Raises:
            UnknownKeyError: no key has this KID.
        """
        if self._query("UPDATE keys SET retired = 1 WHERE kid = ?", (kid,)).rowcount == 0:
            raise UnknownKeyError(f"unknown KID {kid.hex()}")

    def remove(self, kid: bytes) -> None:
        """Forget *kid*: every token minted with it stops verifying."""
        self._query("DELETE FROM keys WHERE kid = ?", (kid,))

    def kids(self) -> list[SigningKey]:
        """Every key, oldest first (keys are hidden from ``repr``)."""
        rows = self._query("SELECT kid, key, retired FROM keys ORDER BY seq").fetchall()
        return [SigningKey(bytes(k), bytes(v), bool(r)) for k, v, r in rows]
