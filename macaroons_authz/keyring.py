"""Deprecated: the keyrings moved to :mod:`macaroons_authz.stores.keyring`.

This module re-exports the same objects for one release and warns on import.
"""

import warnings

from .stores.keyring import (
    MIN_KEY_SIZE,
    Keyring,
    KeyringError,
    MemoryKeyring,
    SigningKey,
    SQLiteKeyring,
    UnknownKeyError,
    check_root_key,
)

__all__ = [
    "MIN_KEY_SIZE",
    "Keyring",
    "KeyringError",
    "MemoryKeyring",
    "SQLiteKeyring",
    "SigningKey",
    "UnknownKeyError",
    "check_root_key",
]

# stacklevel 2 names the importer: warnings skips the import machinery's frames.
warnings.warn(
    "macaroons_authz.keyring is deprecated and will be removed: "
    "import from macaroons_authz.stores.keyring (or macaroons_authz) instead",
    DeprecationWarning,
    stacklevel=2,
)
