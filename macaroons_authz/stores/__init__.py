"""Where keys and revocations are kept: in memory, in SQLite, in PostgreSQL.

A :class:`Keyring` holds root keys by KID (one current key to mint with,
older keys that still verify during a rotation); a :class:`RevocationStore`
holds the ids of revoked tokens, with a feed that verification caches
follow. Each comes in three versions:

* in memory (:class:`MemoryKeyring`, :class:`MemoryRevocationStore`), for
  one process;
* in a SQLite file (:class:`SQLiteKeyring`, :class:`SQLiteRevocationStore`),
  shared by the processes of one machine;
* in PostgreSQL, shared by a fleet, with push invalidation of the caches
  (``PostgresKeyring``, ``PostgresRevocationStore``, ``PostgresInvalidator``,
  in the modules ``postgres_keyring``, ``postgres_revocation`` and
  ``postgres_invalidator``). These need the ``postgres`` extra
  (``pip install 'macaroons_authz[postgres]'``) and are imported only when
  asked for, from their modules or from here::

      from macaroons_authz.stores import PostgresKeyring, PostgresRevocationStore

The SQLite stores and the PostgreSQL ones are context managers: leaving the
``with`` block closes every connection they opened.

For event loops, :mod:`~macaroons_authz.stores.async_` gives every store an
async face (:class:`AsyncKeyring`, :class:`AsyncRevocationStore`: memory
stores inline, others in a worker thread), and
:mod:`~macaroons_authz.stores.postgres_async` has PostgreSQL stores on
psycopg's async connections (``AsyncPostgresKeyring``,
``AsyncPostgresRevocationStore``, imported on first use like the others).

A :class:`FlowStore` keeps a :class:`~macaroons_authz.DischargeService`'s
deferred flows, so that every worker of a fleet can answer their polls:
:class:`MemoryFlowStore` (one process), :class:`SQLiteFlowStore` (one
machine) and ``PostgresFlowStore`` (a fleet; imported on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._sqlite import StoreError
from .async_ import AsyncKeyring, AsyncRevocationStore, async_keyring, async_revocations
from .flows import (
    FlowRecord,
    FlowResult,
    FlowStore,
    FlowStoreFullError,
    MemoryFlowStore,
    SQLiteFlowStore,
)
from .keyring import (
    Keyring,
    KeyringError,
    MemoryKeyring,
    SigningKey,
    SQLiteKeyring,
    UnknownKeyError,
)
from .revocation import (
    MemoryRevocationStore,
    Revocation,
    RevocationStore,
    SQLiteRevocationStore,
    token_id,
)

if TYPE_CHECKING:
    from ._postgres import SchemaError as SchemaError
    from .postgres_async import AsyncPostgresKeyring as AsyncPostgresKeyring
    from .postgres_async import AsyncPostgresRevocationStore as AsyncPostgresRevocationStore
    from .postgres_flows import PostgresFlowStore as PostgresFlowStore
    from .postgres_invalidator import PostgresInvalidator as PostgresInvalidator
    from .postgres_keyring import KeyEncryptionError as KeyEncryptionError
    from .postgres_keyring import PostgresKeyring as PostgresKeyring
    from .postgres_revocation import PostgresRevocationStore as PostgresRevocationStore

__all__ = [
    "AsyncKeyring",
    "AsyncRevocationStore",
    "FlowRecord",
    "FlowResult",
    "FlowStore",
    "FlowStoreFullError",
    "Keyring",
    "KeyringError",
    "MemoryFlowStore",
    "MemoryKeyring",
    "MemoryRevocationStore",
    "Revocation",
    "RevocationStore",
    "SQLiteFlowStore",
    "SQLiteKeyring",
    "SQLiteRevocationStore",
    "SigningKey",
    "StoreError",
    "UnknownKeyError",
    "async_keyring",
    "async_revocations",
    "token_id",
]

# The PostgreSQL names, by the module that defines them: imported on first
# use, so importing this package never needs psycopg. They stay out of
# __all__, so that ``from macaroons_authz.stores import *`` does not need it either.
_POSTGRES = {
    "AsyncPostgresKeyring": "postgres_async",
    "AsyncPostgresRevocationStore": "postgres_async",
    "KeyEncryptionError": "postgres_keyring",
    "PostgresFlowStore": "postgres_flows",
    "PostgresInvalidator": "postgres_invalidator",
    "PostgresKeyring": "postgres_keyring",
    "PostgresRevocationStore": "postgres_revocation",
    "SchemaError": "_postgres",
}


def __getattr__(name: str) -> object:
    module = _POSTGRES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_POSTGRES})
