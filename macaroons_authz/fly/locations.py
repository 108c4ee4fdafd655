"""Fly.io's well-known names: token locations, API addresses and feature names.

The locations are those of superfly/macaroon's ``flyio`` package
(``LocationPermission``, ``LocationAuthentication``,
``LocationNewAuthentication``, ``LocationSecrets``); the Machines API
addresses are those of its ``flyio/machinesapi`` client; the organization
feature names are the ``Feature*`` constants of ``flyio/caveats.go``.
"""

from __future__ import annotations

from ..verifier import FLY_PERMISSION_LOCATION

__all__ = [
    "APP_FEATURE_IMAGES",
    "AUTH_LOCATIONS",
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
    "LOCATION_AUTHENTICATION",
    "LOCATION_NEW_AUTHENTICATION",
    "LOCATION_PERMISSION",
    "LOCATION_SECRETS",
    "MACHINES_API_INTERNAL_URL",
    "MACHINES_API_URL",
    "MACHINE_FEATURE_METADATA",
    "MACHINE_FEATURE_OIDC",
]

#: Where Fly.io's permission tokens are for (the API itself).
LOCATION_PERMISSION = FLY_PERMISSION_LOCATION
#: Fly.io's authentication service, as older tokens name it in their third-party caveat.
LOCATION_AUTHENTICATION = "https://api.fly.io/aaa/v1"
#: Fly.io's authentication service, as newer tokens name it.
LOCATION_NEW_AUTHENTICATION = "https://auth.fly.io"
#: Fly.io's secrets service.
LOCATION_SECRETS = "https://api.fly.io/secrets/v1"
#: Both names of the authentication service, whose discharges expire and are refreshed.
AUTH_LOCATIONS = frozenset({LOCATION_AUTHENTICATION, LOCATION_NEW_AUTHENTICATION})

#: The Machines API, reachable from the internet.
MACHINES_API_URL = "https://api.machines.dev"
#: The Machines API as Machines on Fly.io's private network reach it (plain HTTP there).
MACHINES_API_INTERNAL_URL = "http://_api.internal:4280"

# Organization features (FeatureSet resources, and the member table of AllowedRoles).
FEATURE_WIREGUARD = "wg"
FEATURE_DOMAINS = "domain"
FEATURE_SITES = "site"
FEATURE_REMOTE_BUILDERS = "builder"
FEATURE_ADDONS = "addon"
FEATURE_CHECKS = "checks"
FEATURE_LITEFS_CLOUD = "litefs-cloud"
FEATURE_MEMBERSHIP = "membership"
FEATURE_BILLING = "billing"
FEATURE_DELETION = "deletion"
FEATURE_DOCUMENT_SIGNING = "document_signing"
FEATURE_AUTHENTICATION = "authentication"

# App and Machine features, as the Machines API's Access documents them.
APP_FEATURE_IMAGES = "images"
MACHINE_FEATURE_METADATA = "metadata"
MACHINE_FEATURE_OIDC = "oidc"
