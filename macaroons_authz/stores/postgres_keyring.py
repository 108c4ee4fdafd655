"""A keyring in PostgreSQL, shared by a fleet of verifiers; keys sealed at rest.

It needs the ``postgres`` extra (``pip install 'macaroons_authz[postgres]'``)::

    from macaroons_authz.stores.postgres_keyring import PostgresKeyring

Keys are stored sealed with AES-256-GCM under a key-encryption key (KEK) the
application supplies, with the KID as associated data, so a sealed key
cannot be moved to another KID. The database never sees a key in clear.
Every addition, retirement and removal is announced with ``NOTIFY`` on the
schema's channel, which a
:class:`~macaroons_authz.stores.PostgresInvalidator`
listens to.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import crypto
from ._postgres import (
    ConnectionPool,
    SchemaError,
    _committed,
    _Conn,
    _Database,
    _one,
    _Store,
    sql,
)
from ._sqlite import StoreError
from .keyring import KeyringError, SigningKey, UnknownKeyError, _kid_of

__all__ = ["KeyEncryptionError", "PostgresKeyring", "SchemaError"]

_KEK_SIZE = 32
_NONCE_SIZE = 12
_AAD_PREFIX = b"macaroons_authz keyring v1\x00"


class KeyEncryptionError(StoreError):
    """A stored key cannot be unsealed: the wrong key-encryption key, or an altered row."""


def _kek_id(kek: bytes) -> bytes:
    # Identifies a KEK without revealing anything about it, so a row says
    # which KEK sealed it and a wrong KEK is reported as such.
    return hmac.new(kek, b"macaroons_authz key-encryption key id", hashlib.sha256).digest()[:8]


class _Sealer:
    """AES-256-GCM under the current KEK, opening with the current or an old one."""

    def __init__(self, kek: bytes, old_keks: Sequence[bytes]) -> None:
        self._aeads: dict[bytes, AESGCM] = {}
        for k in (kek, *old_keks):
            crypto.check_key(k, "key-encryption key", _KEK_SIZE)
            self._aeads.setdefault(_kek_id(k), AESGCM(k))
        self.current = _kek_id(kek)

    def seal(self, kid: bytes, key: bytes) -> tuple[bytes, bytes, bytes]:
        nonce = crypto.random_bytes(_NONCE_SIZE)
        return self.current, nonce, self._aeads[self.current].encrypt(nonce, key, _AAD_PREFIX + kid)

    def open(self, kid: bytes, kek_id: bytes, nonce: bytes, sealed: bytes) -> bytes:
        aead = self._aeads.get(kek_id)
        if aead is None:
            raise KeyEncryptionError(
                f"the key of KID {kid.hex()} is sealed under a key-encryption key "
                f"(id {kek_id.hex()}) this keyring was not given"
            )
        try:
            return aead.decrypt(nonce, sealed, _AAD_PREFIX + kid)
        except InvalidTag:
            raise KeyEncryptionError(
                f"the key of KID {kid.hex()} does not unseal: its row was altered"
            ) from None


def _keyring_migrations(db: _Database) -> list[sql.Composed]:
    return [
        sql.SQL(
            """
            CREATE TABLE {keys} (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                kid bytea NOT NULL UNIQUE,
                kek_id bytea NOT NULL,
                nonce bytea NOT NULL,
                sealed bytea NOT NULL,
                retired boolean NOT NULL DEFAULT false,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """
        ).format(keys=db.table("macaroons_authz_keys")),
    ]


class PostgresKeyring(_Store):
    """A keyring in PostgreSQL, shared by a fleet; keys sealed under a KEK.

    Its methods are those of :class:`~macaroons_authz.MemoryKeyring`. Keys
    are stored sealed with AES-256-GCM under *kek* (the KID is the
    associated data); a key that does not unseal raises
    :class:`KeyEncryptionError`. To rotate the KEK, construct the keyring
    with the new one as *kek* and the old one in *old_keks*, call
    :meth:`rewrap`, then drop the old one.

    Args:
        database: a libpq connection string or URL, or a
            ``psycopg_pool.ConnectionPool`` to share (which then stays the
            caller's to close).
        kek: the 32-byte key-encryption key. Keep it out of the database:
            in a secret manager, or the environment of the verifiers.
        old_keks: earlier KEKs that keys may still be sealed under.
        schema: the PostgreSQL schema holding the tables.
        pool_size: the most connections the pool opens (when it is ours).
        timeout: seconds to wait for a connection before
            :class:`~macaroons_authz.StoreError`.
    """

    def __init__(
        self,
        database: str | ConnectionPool[Any],
        *,
        kek: bytes,
        old_keks: Sequence[bytes] = (),
        schema: str = "public",
        pool_size: int = 8,
        timeout: float = 10.0,
    ) -> None:
        self._sealer = _Sealer(kek, old_keks)
        db = self._db = _Database(
            database,
            schema=schema,
            component="keyring",
            migrations=_keyring_migrations,
            pool_size=pool_size,
            timeout=timeout,
        )
        keys = db.table("macaroons_authz_keys")
        self._q_key_for = db.query(
            "SELECT kek_id, nonce, sealed FROM {keys} WHERE kid = %s", keys=keys
        )
        self._q_current = db.query(
            "SELECT kid, kek_id, nonce, sealed FROM {keys} WHERE NOT retired "
            "ORDER BY seq DESC LIMIT 1",
            keys=keys,
        )
        self._q_all = db.query(
            "SELECT kid, kek_id, nonce, sealed, retired FROM {keys} ORDER BY seq", keys=keys
        )
        self._q_lock = db.query("LOCK TABLE {keys} IN SHARE ROW EXCLUSIVE MODE", keys=keys)
        self._q_insert = db.query(
            "INSERT INTO {keys} (kid, kek_id, nonce, sealed) VALUES (%s, %s, %s, %s)", keys=keys
        )
        self._q_delete = db.query("DELETE FROM {keys} WHERE kid = %s RETURNING seq", keys=keys)
        self._q_retire = db.query(
            "UPDATE {keys} SET retired = true WHERE kid = %s RETURNING seq", keys=keys
        )
        self._q_reseal = db.query(
            "UPDATE {keys} SET kek_id = %s, nonce = %s, sealed = %s WHERE kid = %s", keys=keys
        )
        self._q_fingerprint = db.query(
            "SELECT count(*), coalesce(max(seq), 0) FROM {keys}", keys=keys
        )

    def __repr__(self) -> str:
        return f"<PostgresKeyring schema={self._db.schema!r}>"

    def __len__(self) -> int:
        return self._db.run(lambda c: int(_one(c.execute(self._q_fingerprint))[0]), retry=True)

    def _notify(self, conn: _Conn, event: str, kid: bytes) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (self._db.channel, f"key {event} {kid.hex()}"))

    def add(self, key: bytes, kid: bytes | None = None) -> bytes:
        """Add *key* as the current key; return its KID.

        Raises:
            KeyringError: another key already has this KID.
        """
        kid = _kid_of(key, kid)
        kek_id, nonce, sealed = self._sealer.seal(kid, key)

        def write(conn: _Conn) -> None:
            with _committed(conn):
                conn.execute(self._q_lock)
                row = conn.execute(self._q_key_for, (kid,)).fetchone()
                if row is not None and not crypto.equal(self._open(kid, row), key):
                    raise KeyringError(f"KID {kid.hex()} is already used by another key")
                # Re-inserting gives the key the newest sequence number: it is current.
                conn.execute(self._q_delete, (kid,))
                conn.execute(self._q_insert, (kid, kek_id, nonce, sealed))
                self._notify(conn, "add", kid)

        self._db.run(write)
        return kid

    def generate(self) -> bytes:
        """Add a new random key as the current key (a rotation); return its KID."""
        return self.add(crypto.new_signing_key())

    def _open(self, kid: bytes, row: tuple[Any, ...]) -> bytes:
        kek_id, nonce, sealed = row
        return self._sealer.open(kid, bytes(kek_id), bytes(nonce), bytes(sealed))

    def key_for(self, kid: bytes) -> bytes | None:
        """The root key for *kid*, retired or not, or ``None``.

        Raises:
            KeyEncryptionError: the key is sealed under another KEK, or altered.
        """
        row = self._db.run(
            lambda c: c.execute(self._q_key_for, (kid,), prepare=True).fetchone(), retry=True
        )
        return None if row is None else self._open(kid, row)

    def current(self) -> SigningKey:
        """The newest key that is not retired: the one to mint with.

        Raises:
            KeyringError: every key is retired, or there is none.
        """
        row = self._db.run(
            lambda c: c.execute(self._q_current, prepare=True).fetchone(), retry=True
        )
        if row is None:
            raise KeyringError("the keyring has no key to mint with")
        kid = bytes(row[0])
        return SigningKey(kid, self._open(kid, row[1:]))

    def retire(self, kid: bytes) -> None:
        """Stop minting with *kid*; tokens it minted still verify until :meth:`remove`.

        Raises:
            UnknownKeyError: no key has this KID.
        """

        def write(conn: _Conn) -> None:
            with _committed(conn):
                conn.execute(self._q_lock)
                if conn.execute(self._q_retire, (kid,)).fetchone() is None:
                    raise UnknownKeyError(f"unknown KID {kid.hex()}")
                self._notify(conn, "retire", kid)

        self._db.run(write)

    def remove(self, kid: bytes) -> None:
        """Forget *kid*: every token minted with it stops verifying."""

        def write(conn: _Conn) -> None:
            with _committed(conn):
                conn.execute(self._q_lock)
                if conn.execute(self._q_delete, (kid,)).fetchone() is not None:
                    self._notify(conn, "remove", kid)

        self._db.run(write)

    def kids(self) -> list[SigningKey]:
        """Every key, oldest first (keys are hidden from ``repr``)."""
        rows = self._db.run(lambda c: c.execute(self._q_all).fetchall(), retry=True)
        return [
            SigningKey(bytes(kid), self._open(bytes(kid), (k, n, s)), bool(r))
            for kid, k, n, s, r in rows
        ]

    def rewrap(self) -> int:
        """Reseal every key not sealed under the current KEK; return how many.

        Raises:
            KeyEncryptionError: a key is sealed under a KEK this keyring was
                not given.
        """

        def write(conn: _Conn) -> int:
            done = 0
            with _committed(conn):
                conn.execute(self._q_lock)
                for kid, kek_id, nonce, sealed, _ in conn.execute(self._q_all).fetchall():
                    if bytes(kek_id) == self._sealer.current:
                        continue
                    key = self._open(bytes(kid), (kek_id, nonce, sealed))
                    conn.execute(self._q_reseal, (*self._sealer.seal(bytes(kid), key), kid))
                    done += 1
            return done

        return self._db.run(write)
