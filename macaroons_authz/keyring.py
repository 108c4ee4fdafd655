"""Signing keys by key id, with rotation.

A verifier finds a token's root key by the KID in its nonce. A keyring
holds several keys at once so they can be rotated: the *current* key mints
new tokens; older keys keep verifying the tokens they minted until they are
removed. Retiring a key stops it from minting but not from verifying.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import attrs

from . import crypto
from .errors import MacaroonError

__all__ = ["Keyring", "KeyringError", "MemoryKeyring", "SigningKey", "UnknownKeyError"]


class KeyringError(MacaroonError, ValueError):
    """A keyring cannot do what was asked (a KID clash, no key to mint with)."""


class UnknownKeyError(KeyringError, LookupError):
    """The keyring holds no key with this KID."""


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
        self._lock = threading.Lock()
        self._keys: dict[bytes, SigningKey] = {}
        for key in keys:
            self.add(key)

    def __repr__(self) -> str:
        with self._lock:
            kids = ", ".join(k.hex() for k in self._keys)
        return f"<MemoryKeyring kids=[{kids}]>"

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def add(self, key: bytes, kid: bytes | None = None) -> bytes:
        """Add *key* as the current key; return its KID.

        Raises:
            KeyringError: another key already has this KID.
        """
        crypto.check_key(key, "key")
        kid = crypto.kid_for_key(key) if kid is None else crypto.check_key(kid, "kid")
        with self._lock:
            existing = self._keys.get(kid)
            if existing is not None and not crypto.equal(existing.key, key):
                raise KeyringError(f"KID {kid.hex()} is already used by another key")
            # Re-inserting moves the key to the end: the newest key is current.
            self._keys.pop(kid, None)
            self._keys[kid] = SigningKey(kid, key)
        return kid

    def generate(self) -> bytes:
        """Add a new random key as the current key (a rotation); return its KID."""
        return self.add(crypto.new_signing_key())

    def key_for(self, kid: bytes) -> bytes | None:
        """The root key for *kid*, retired or not, or ``None``."""
        with self._lock:
            entry = self._keys.get(kid)
        return None if entry is None else entry.key

    def current(self) -> SigningKey:
        """The newest key that is not retired: the one to mint with.

        Raises:
            KeyringError: every key is retired, or there is none.
        """
        with self._lock:
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
            self._keys[kid] = attrs.evolve(entry, retired=True)

    def remove(self, kid: bytes) -> None:
        """Forget *kid*: every token minted with it stops verifying."""
        with self._lock:
            self._keys.pop(kid, None)

    def kids(self) -> list[SigningKey]:
        """Every key, oldest first (keys are hidden from ``repr``)."""
        with self._lock:
            return list(self._keys.values())
