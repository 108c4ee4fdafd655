"""Deprecated: the revocation stores moved to :mod:`macaroons_authz.stores.revocation`.

This module re-exports the same objects for one release and warns on import.
"""

import warnings

from .stores.revocation import (
    MemoryRevocationStore,
    Revocation,
    RevocationStore,
    SQLiteRevocationStore,
    token_id,
)

__all__ = [
    "MemoryRevocationStore",
    "Revocation",
    "RevocationStore",
    "SQLiteRevocationStore",
    "token_id",
]

# stacklevel 2 names the importer: warnings skips the import machinery's frames.
warnings.warn(
    "macaroons_authz.revocation is deprecated and will be removed: "
    "import from macaroons_authz.stores.revocation (or macaroons_authz) instead",
    DeprecationWarning,
    stacklevel=2,
)
