"""Deprecated: bundles moved to :mod:`macaroons_authz.thirdparty.bundle`.

This module re-exports the same objects for one release and warns on import.
"""

import warnings

from .thirdparty.bundle import (
    Bundle,
    BundleToken,
    FailedMacaroon,
    Filter,
    MacaroonToken,
    MalformedMacaroon,
    MalformedTokensError,
    NoAuthorizedTokensError,
    NonMacaroon,
    NoVerifiedTokensError,
    Predicate,
    UnverifiedMacaroon,
    VerifiedMacaroon,
    allows_access,
    at_location,
    has_caveat,
    is_kind,
)

__all__ = [
    "Bundle",
    "BundleToken",
    "FailedMacaroon",
    "Filter",
    "MacaroonToken",
    "MalformedMacaroon",
    "MalformedTokensError",
    "NoAuthorizedTokensError",
    "NoVerifiedTokensError",
    "NonMacaroon",
    "Predicate",
    "UnverifiedMacaroon",
    "VerifiedMacaroon",
    "allows_access",
    "at_location",
    "has_caveat",
    "is_kind",
]

# stacklevel 2 names the importer: warnings skips the import machinery's frames.
warnings.warn(
    "macaroons_authz.bundle is deprecated and will be removed: "
    "import from macaroons_authz.thirdparty.bundle (or macaroons_authz) instead",
    DeprecationWarning,
    stacklevel=2,
)
