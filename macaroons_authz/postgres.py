"""Deprecated: the PostgreSQL stores moved to :mod:`macaroons_authz.stores`.

``PostgresKeyring`` and ``KeyEncryptionError`` are in
:mod:`macaroons_authz.stores.postgres_keyring`, ``PostgresRevocationStore``
in :mod:`macaroons_authz.stores.postgres_revocation`,
``PostgresInvalidator`` in :mod:`macaroons_authz.stores.postgres_invalidator`;
all of them, and ``SchemaError``, can be imported from
:mod:`macaroons_authz.stores`. This module re-exports the same objects for
one release and warns on import.
"""

import warnings

from .stores._postgres import SchemaError
from .stores.postgres_invalidator import PostgresInvalidator
from .stores.postgres_keyring import KeyEncryptionError, PostgresKeyring
from .stores.postgres_revocation import PostgresRevocationStore

__all__ = [
    "KeyEncryptionError",
    "PostgresInvalidator",
    "PostgresKeyring",
    "PostgresRevocationStore",
    "SchemaError",
]

# stacklevel 2 names the importer: warnings skips the import machinery's frames.
warnings.warn(
    "macaroons_authz.postgres is deprecated and will be removed: import PostgresKeyring, "
    "PostgresRevocationStore, PostgresInvalidator, SchemaError and KeyEncryptionError "
    "from macaroons_authz.stores instead",
    DeprecationWarning,
    stacklevel=2,
)
