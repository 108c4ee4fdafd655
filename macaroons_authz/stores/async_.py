"""The async face of the stores, for :class:`~macaroons_authz.AsyncVerifier`.

An :class:`AsyncKeyring` and an :class:`AsyncRevocationStore` are the
:class:`~macaroons_authz.Keyring` and
:class:`~macaroons_authz.RevocationStore` protocols with coroutines. Any
store becomes one with :func:`async_keyring` / :func:`async_revocations`:

* a store that is already async (its methods are coroutine functions, as
  in :mod:`~macaroons_authz.stores.postgres_async`) is used as it is;
* the in-memory stores answer from memory in microseconds: they are called
  directly on the event loop (:class:`InlineKeyring`,
  :class:`InlineRevocationStore`), since a hand-off to a thread costs more;
* every other store (SQLite, the blocking PostgreSQL stores, yours) is
  called in a worker thread with :func:`asyncio.to_thread`
  (:class:`ThreadedKeyring`, :class:`ThreadedRevocationStore`), so its I/O
  never blocks the loop. The SQLite stores give each thread its own
  connection, so the default executor's threads each open one.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Protocol, runtime_checkable

from .keyring import Keyring, MemoryKeyring
from .revocation import MemoryRevocationStore, Revocation, RevocationStore

__all__ = [
    "AsyncKeyring",
    "AsyncRevocationStore",
    "InlineKeyring",
    "InlineRevocationStore",
    "ThreadedKeyring",
    "ThreadedRevocationStore",
    "async_keyring",
    "async_revocations",
]


@runtime_checkable
class AsyncKeyring(Protocol):
    """What an :class:`~macaroons_authz.AsyncVerifier` needs: a key for a KID, awaited."""

    async def key_for(self, kid: bytes) -> bytes | None:
        """The root key for *kid*, or ``None`` if there is none."""
        ...


@runtime_checkable
class AsyncRevocationStore(Protocol):
    """Where revocations are kept, with coroutines."""

    async def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        """Revoke *token_id* durably; ``True`` if it was not revoked before."""
        ...

    async def is_revoked(self, token_id: str) -> bool:
        """Whether *token_id* is revoked."""
        ...

    async def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        """Revocations after *cursor* (0 for all), oldest first, and the new cursor."""
        ...


class InlineKeyring:
    """A keyring that answers from memory, awaited without leaving the event loop."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def __repr__(self) -> str:
        return f"<InlineKeyring {self.keyring!r}>"

    async def key_for(self, kid: bytes) -> bytes | None:
        """The root key for *kid*, or ``None``."""
        return self.keyring.key_for(kid)


class ThreadedKeyring:
    """A blocking keyring, called in a worker thread (:func:`asyncio.to_thread`)."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def __repr__(self) -> str:
        return f"<ThreadedKeyring {self.keyring!r}>"

    async def key_for(self, kid: bytes) -> bytes | None:
        """The root key for *kid*, or ``None``, looked up in a worker thread."""
        return await asyncio.to_thread(self.keyring.key_for, kid)


class InlineRevocationStore:
    """A revocation store that answers from memory, awaited without leaving the event loop."""

    def __init__(self, store: RevocationStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"<InlineRevocationStore {self.store!r}>"

    async def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        """Revoke *token_id*; ``True`` if it was not revoked before."""
        return self.store.revoke(token_id, reason=reason, at=at)

    async def is_revoked(self, token_id: str) -> bool:
        """Whether *token_id* is revoked."""
        return self.store.is_revoked(token_id)

    async def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        """Revocations after *cursor*, oldest first, and the new cursor."""
        return self.store.revoked_since(cursor)


class ThreadedRevocationStore:
    """A blocking revocation store, called in a worker thread (:func:`asyncio.to_thread`)."""

    def __init__(self, store: RevocationStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"<ThreadedRevocationStore {self.store!r}>"

    async def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        """Revoke *token_id* in a worker thread; ``True`` if it was not revoked before."""
        return await asyncio.to_thread(self.store.revoke, token_id, reason=reason, at=at)

    async def is_revoked(self, token_id: str) -> bool:
        """Whether *token_id* is revoked, asked in a worker thread."""
        return await asyncio.to_thread(self.store.is_revoked, token_id)

    async def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        """Revocations after *cursor* and the new cursor, read in a worker thread."""
        return await asyncio.to_thread(self.store.revoked_since, cursor)


def _is_async(store: object, method: str) -> bool:
    return inspect.iscoroutinefunction(getattr(store, method, None))


def async_keyring(keyring: Keyring | AsyncKeyring) -> AsyncKeyring:
    """*keyring* as an :class:`AsyncKeyring`: as it is if async, else inline or threaded.

    Only :class:`~macaroons_authz.MemoryKeyring` (exactly that class) is
    called inline; any other blocking keyring goes to a worker thread.
    """
    if _is_async(keyring, "key_for"):
        return keyring  # type: ignore[return-value]  # checked just above
    if type(keyring) is MemoryKeyring:
        return InlineKeyring(keyring)
    return ThreadedKeyring(keyring)  # type: ignore[arg-type]  # not async: blocking


def async_revocations(store: RevocationStore | AsyncRevocationStore) -> AsyncRevocationStore:
    """*store* as an :class:`AsyncRevocationStore`: as it is if async, else inline or threaded.

    Only :class:`~macaroons_authz.MemoryRevocationStore` (exactly that
    class) is called inline; any other blocking store goes to a worker
    thread.
    """
    if _is_async(store, "is_revoked"):
        return store  # type: ignore[return-value]  # checked just above
    if type(store) is MemoryRevocationStore:
        return InlineRevocationStore(store)
    return ThreadedRevocationStore(store)  # type: ignore[arg-type]  # not async: blocking
