"""Fly.io's own tokens: finding them, holding them, checking them with Fly.io.

* :func:`discover_token` finds the token flyctl would use;
* :class:`TokenSet` holds a user's macaroons and OAuth tokens apart and
  makes the headers Fly.io's services take;
* :class:`Discharger` fetches the authentication service's discharges and
  refreshes them before they expire; :class:`Refresher` does it in a
  background thread, and :func:`write_access_token` saves the tokens to
  flyctl's ``config.yml``, atomically;
* :mod:`~macaroons_authz.fly.recipes` makes flyctl's restricted kinds of
  token from one you hold;
* :class:`MachinesAPIClient` asks Fly.io's Machines API to verify tokens
  only Fly.io can verify;
* the well-known locations, feature names and small helpers of Go's
  ``flyio`` package.
"""

from __future__ import annotations

from .config_file import ACCESS_TOKEN_KEY, ConfigChangedError, write_access_token
from .discharges import DEFAULT_REFRESH_MARGIN, Discharger, RefreshResult
from .discovery import (
    ACCESS_TOKEN_ENV,
    API_TOKEN_ENV,
    CONFIG_DIR_ENV,
    MAX_CONFIG_SIZE,
    DiscoveredToken,
    FlyConfigError,
    MissingExtraError,
    NoFlyTokenError,
    TokenSource,
    config_path,
    discover_token,
)
from .helpers import (
    flyio_organization_ids,
    flyio_user_ids,
    get_max_validity,
    github_org_ids,
    google_hds,
    is_auth_token,
    is_for_org,
    is_for_org_unverified,
    is_new_auth_token,
    is_permission_token,
    is_secrets_token,
    nonce_email,
    nonce_emails,
    token_uuids,
)
from .locations import (
    APP_FEATURE_IMAGES,
    AUTH_LOCATIONS,
    FEATURE_ADDONS,
    FEATURE_AUTHENTICATION,
    FEATURE_BILLING,
    FEATURE_CHECKS,
    FEATURE_DELETION,
    FEATURE_DOCUMENT_SIGNING,
    FEATURE_DOMAINS,
    FEATURE_LITEFS_CLOUD,
    FEATURE_MEMBERSHIP,
    FEATURE_REMOTE_BUILDERS,
    FEATURE_SITES,
    FEATURE_WIREGUARD,
    LOCATION_AUTHENTICATION,
    LOCATION_NEW_AUTHENTICATION,
    LOCATION_PERMISSION,
    LOCATION_SECRETS,
    MACHINE_FEATURE_METADATA,
    MACHINE_FEATURE_OIDC,
    MACHINES_API_INTERNAL_URL,
    MACHINES_API_URL,
)
from .machines_api import (
    AUTHENTICATE_PATH,
    AUTHORIZE_PATH,
    MachinesAccess,
    MachinesAPIClient,
    MachinesAPIError,
    RemoteUnauthorizedError,
    RemoteVerificationError,
)
from .recipes import (
    DEFAULT_TOKEN_EXPIRY,
    SSH_MUTATIONS,
    machine_exec_token,
    readonly_token,
    ssh_token,
)
from .refresher import Refresher
from .token_set import DEFAULT_ADVANCE_PRUNE, TokenSet, unverified_expiration

__all__ = [
    "ACCESS_TOKEN_ENV",
    "ACCESS_TOKEN_KEY",
    "API_TOKEN_ENV",
    "APP_FEATURE_IMAGES",
    "AUTHENTICATE_PATH",
    "AUTHORIZE_PATH",
    "AUTH_LOCATIONS",
    "CONFIG_DIR_ENV",
    "ConfigChangedError",
    "DEFAULT_REFRESH_MARGIN",
    "Discharger",
    "DEFAULT_ADVANCE_PRUNE",
    "DEFAULT_TOKEN_EXPIRY",
    "DiscoveredToken",
    "FEATURE_ADDONS",
    "FEATURE_AUTHENTICATION",
    "FEATURE_BILLING",
    "FEATURE_CHECKS",
    "FEATURE_DELETION",
    "FEATURE_DOCUMENT_SIGNING",
    "FEATURE_DOMAINS",
    "FEATURE_LITEFS_CLOUD",
    "FEATURE_MEMBERSHIP",
    "FEATURE_REMOTE_BUILDERS",
    "FEATURE_SITES",
    "FEATURE_WIREGUARD",
    "FlyConfigError",
    "LOCATION_AUTHENTICATION",
    "LOCATION_NEW_AUTHENTICATION",
    "LOCATION_PERMISSION",
    "LOCATION_SECRETS",
    "MACHINES_API_INTERNAL_URL",
    "MACHINES_API_URL",
    "MACHINE_FEATURE_METADATA",
    "MACHINE_FEATURE_OIDC",
    "MAX_CONFIG_SIZE",
    "MachinesAPIClient",
    "MachinesAPIError",
    "MachinesAccess",
    "MissingExtraError",
    "NoFlyTokenError",
    "RemoteUnauthorizedError",
    "RefreshResult",
    "Refresher",
    "RemoteVerificationError",
    "SSH_MUTATIONS",
    "TokenSet",
    "TokenSource",
    "config_path",
    "discover_token",
    "flyio_organization_ids",
    "flyio_user_ids",
    "get_max_validity",
    "github_org_ids",
    "google_hds",
    "is_auth_token",
    "is_for_org",
    "is_for_org_unverified",
    "is_new_auth_token",
    "is_permission_token",
    "is_secrets_token",
    "machine_exec_token",
    "nonce_email",
    "nonce_emails",
    "readonly_token",
    "ssh_token",
    "token_uuids",
    "unverified_expiration",
    "write_access_token",
]
