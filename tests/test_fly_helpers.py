"""Fly.io's constants and the small flyio/auth helpers (macaroons_authz.fly.helpers)."""

from __future__ import annotations

from fly_helpers import KEY, NOW, ORG, TRUSTED, fly_tokens

import macaroons_authz
from macaroons_authz import (
    MEMBER_FEATURES,
    Action,
    Bundle,
    DischargeRequest,
    FlyioIdentity,
    GitHubIdentity,
    GoogleIdentity,
    IfPresent,
    MaxValidity,
    MemoryKeyring,
    Organization,
    Predicate,
    ValidityWindow,
    mint,
    org_token,
    to_header,
)
from macaroons_authz.fly import (
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
    MACHINES_API_INTERNAL_URL,
    MACHINES_API_URL,
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


def test_locations_are_gos() -> None:
    # superfly/macaroon flyio/flyio.go and flyio/machinesapi/machinesapi.go.
    assert LOCATION_PERMISSION == "https://api.fly.io/v1"
    assert LOCATION_AUTHENTICATION == "https://api.fly.io/aaa/v1"
    assert LOCATION_NEW_AUTHENTICATION == "https://auth.fly.io"
    assert LOCATION_SECRETS == "https://api.fly.io/secrets/v1"
    assert {LOCATION_AUTHENTICATION, LOCATION_NEW_AUTHENTICATION} == AUTH_LOCATIONS
    assert MACHINES_API_URL == "https://api.machines.dev"
    assert MACHINES_API_INTERNAL_URL == "http://_api.internal:4280"
    assert macaroons_authz.FLY_PERMISSION_LOCATION == LOCATION_PERMISSION


def test_feature_names_are_gos_and_those_of_the_member_table() -> None:
    # superfly/macaroon flyio/caveats.go, the Feature* constants.
    features = {
        FEATURE_WIREGUARD: "wg",
        FEATURE_DOMAINS: "domain",
        FEATURE_SITES: "site",
        FEATURE_REMOTE_BUILDERS: "builder",
        FEATURE_ADDONS: "addon",
        FEATURE_CHECKS: "checks",
        FEATURE_LITEFS_CLOUD: "litefs-cloud",
        FEATURE_MEMBERSHIP: "membership",
        FEATURE_BILLING: "billing",
        FEATURE_DELETION: "deletion",
        FEATURE_DOCUMENT_SIGNING: "document_signing",
        FEATURE_AUTHENTICATION: "authentication",
    }
    assert all(name == value for name, value in features.items())
    assert set(features) == set(MEMBER_FEATURES)


def test_strip_scheme_is_public() -> None:
    assert macaroons_authz.strip_scheme(" Bearer FlyV1 fm2_a,fm2_b ") == "fm2_a,fm2_b"
    assert "strip_scheme" in macaroons_authz.__all__


def test_location_predicates() -> None:
    tokens = fly_tokens()
    bundle = Bundle.parse(tokens.header, LOCATION_PERMISSION)
    kinds = [
        (is_permission_token(t), is_new_auth_token(t), is_auth_token(t), is_secrets_token(t))
        for t in bundle
    ]
    assert kinds[:2] == [(True, False, False, False), (False, True, False, False)]
    old = Bundle.parse(
        fly_tokens(auth_location=LOCATION_AUTHENTICATION).header, LOCATION_PERMISSION
    )
    assert [is_auth_token(t) for t in old] == [False, True, False]


def test_is_for_org_needs_verified_tokens() -> None:
    tokens = fly_tokens()
    bundle = Bundle.parse(tokens.header, LOCATION_PERMISSION)
    assert not bundle.select(is_for_org(ORG, now=NOW)).permission_tokens()
    bundle.verify(MemoryKeyring([KEY]), trusted_3ps=TRUSTED)
    assert len(bundle.select(is_for_org(ORG, now=NOW)).permission_tokens()) == 1
    assert not bundle.select(is_for_org(ORG + 1, now=NOW)).permission_tokens()
    # The discharge's window applies: after it, the token reaches nothing.
    assert not bundle.select(is_for_org(ORG, now=NOW + 7200)).permission_tokens()


def test_is_for_org_unverified_reads_the_tokens_own_caveats() -> None:
    bundle = Bundle.parse(fly_tokens().header, LOCATION_PERMISSION)
    assert len(bundle.select(is_for_org_unverified(ORG)).tokens) == 1
    assert not bundle.select(is_for_org_unverified(ORG + 1)).tokens
    two = org_token(KEY, ORG)
    two.add(Organization(ORG + 1, Action.ALL))
    none = mint(KEY)
    for token in (two, none):
        held = Bundle.parse(to_header(token), LOCATION_PERMISSION)
        assert not held.select(is_for_org_unverified(ORG)).tokens


def test_token_uuids_and_nonce_emails_of_permission_tokens() -> None:
    first, second = fly_tokens(), fly_tokens()
    header = to_header(first.permission, second.permission, first.discharge)
    bundle = Bundle.parse(header, LOCATION_PERMISSION)
    uuids = [str(first.permission.nonce.uuid), str(second.permission.nonce.uuid)]
    assert token_uuids(bundle) == uuids
    assert nonce_emails(bundle) == [f"{u}@tokens.fly.io" for u in uuids]
    assert nonce_email(first.permission.nonce) == f"{uuids[0]}@tokens.fly.io"
    # Go selects flyio.IsPermissionToken whatever the bundle's location.
    elsewhere = Bundle.parse(header, "https://other.example", filter=Predicate(lambda _: True))
    assert token_uuids(elsewhere) == uuids


def test_get_max_validity_is_the_shortest() -> None:
    assert get_max_validity([]) is None
    assert get_max_validity([ValidityWindow(0, 1)]) is None
    assert get_max_validity([MaxValidity(3600), ValidityWindow(0, 1), MaxValidity(60)]) == 60
    # As Go's GetCaveats finds them, those inside IfPresent count too.
    assert get_max_validity([MaxValidity(60), IfPresent((MaxValidity(5),), Action.ALL)]) == 5


def test_discharge_request_ids_as_go_collects_them() -> None:
    # superfly/macaroon auth/discharge_request.go: FlyioUserIDs, FlyioOrganizationIDs,
    # GoogleHDs, GitHubOrgIDs collect each id once (Go's map keys; sorted here).
    request = DischargeRequest(
        flyio=[FlyioIdentity(9, (3, 1)), FlyioIdentity(2, (1, 5)), FlyioIdentity(9)],
        google=[GoogleIdentity(1, "b.example"), GoogleIdentity(2, "a.example"), GoogleIdentity(3)],
        github=[GitHubIdentity(1, "ada", (40, 7)), GitHubIdentity(2, "bob", (7,))],
        at=NOW,
    )
    assert flyio_user_ids(request) == (2, 9)
    assert flyio_organization_ids(request) == (1, 3, 5)
    assert google_hds(request) == ("", "a.example", "b.example")
    assert github_org_ids(request) == (7, 40)
    empty = DischargeRequest(at=NOW)
    assert (flyio_user_ids(empty), google_hds(empty), github_org_ids(empty)) == ((), (), ())
