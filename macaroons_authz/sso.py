"""Deprecated: SSO identities moved to :mod:`macaroons_authz.thirdparty.sso`.

This module re-exports the same objects for one release and warns on import.
"""

import warnings

from .thirdparty.sso import (
    GOOGLE_ISSUERS,
    ExpiredTokenError,
    HostedDomainError,
    IdentityError,
    InvalidSignatureError,
    MalformedIdentityError,
    MissingHostedDomainError,
    NotYetValidError,
    UnknownSigningKeyError,
    UnsupportedAlgorithmError,
    WrongAudienceError,
    WrongHostedDomainError,
    WrongIssuerError,
    WrongNonceError,
    discharge_request,
    github_identity,
    issue_discharge,
    verify_google_id_token,
)

# Public before the move though not in __all__: kept importable, not star-exported.
from .thirdparty.sso import MAX_ID_TOKEN_LENGTH as MAX_ID_TOKEN_LENGTH
from .thirdparty.sso import Identity as Identity

__all__ = [
    "GOOGLE_ISSUERS",
    "ExpiredTokenError",
    "HostedDomainError",
    "IdentityError",
    "InvalidSignatureError",
    "MalformedIdentityError",
    "MissingHostedDomainError",
    "NotYetValidError",
    "UnknownSigningKeyError",
    "UnsupportedAlgorithmError",
    "WrongAudienceError",
    "WrongHostedDomainError",
    "WrongIssuerError",
    "WrongNonceError",
    "discharge_request",
    "github_identity",
    "issue_discharge",
    "verify_google_id_token",
]

# stacklevel 2 names the importer: warnings skips the import machinery's frames.
warnings.warn(
    "macaroons_authz.sso is deprecated and will be removed: "
    "import from macaroons_authz.thirdparty.sso (or macaroons_authz) instead",
    DeprecationWarning,
    stacklevel=2,
)
