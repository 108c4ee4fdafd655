"""Authentication caveats against discharge requests, and attestations (spec 8, 9.6)."""

from __future__ import annotations

from typing import Any

import pytest
from authz_helpers import T0, assert_prohibits, fly, validate_outcome

from macaroons_authz import (
    BadCaveatError,
    Caveat,
    CaveatSet,
    ConfineGitHubOrg,
    ConfineGoogleHD,
    ConfineOrganization,
    ConfineUser,
    DecodeError,
    DischargeRequest,
    FlyioIdentity,
    FlyioUserID,
    GitHubIdentity,
    GitHubUserID,
    GoogleIdentity,
    GoogleUserID,
    IfPresent,
    InvalidAccessError,
    MaxValidity,
    UnauthorizedError,
    ValidityWindow,
)

Plain = UnauthorizedError


def req(**fields: Any) -> DischargeRequest:
    fields.setdefault("at", T0)
    return DischargeRequest(**fields)


ALICE = FlyioIdentity(5, [10, 11])
BOB = FlyioIdentity(6, [12])
GOOGLE = GoogleIdentity(2**80 + 1, hd="example.com", email="a@example.com")
GITHUB = GitHubIdentity(99, login="octo", org_ids=[42, 43])


@pytest.mark.parametrize(
    ("caveat", "access", "expected"),
    [
        # ConfineUser
        pytest.param(ConfineUser(5), req(flyio=[ALICE]), None, id="user"),
        pytest.param(ConfineUser(5), req(flyio=[BOB, ALICE]), None, id="user-second-login"),
        pytest.param(ConfineUser(5), req(flyio=[BOB]), Plain, id="user-other"),
        pytest.param(ConfineUser(5), req(), Plain, id="user-no-login"),
        pytest.param(ConfineUser(5), req(google=[GOOGLE]), Plain, id="user-google-only"),
        # ConfineOrganization
        pytest.param(ConfineOrganization(11), req(flyio=[ALICE]), None, id="org"),
        pytest.param(ConfineOrganization(12), req(flyio=[ALICE, BOB]), None, id="org-second"),
        pytest.param(ConfineOrganization(13), req(flyio=[ALICE, BOB]), Plain, id="org-other"),
        pytest.param(ConfineOrganization(5), req(flyio=[ALICE]), Plain, id="org-not-user-id"),
        pytest.param(ConfineOrganization(11), req(github=[GITHUB]), Plain, id="org-no-flyio"),
        # ConfineGoogleHD
        pytest.param(ConfineGoogleHD("example.com"), req(google=[GOOGLE]), None, id="hd"),
        pytest.param(ConfineGoogleHD("other.com"), req(google=[GOOGLE]), Plain, id="hd-other"),
        pytest.param(ConfineGoogleHD("example.com"), req(flyio=[ALICE]), Plain, id="hd-no-google"),
        pytest.param(
            ConfineGoogleHD(""), req(google=[GoogleIdentity(1)]), None, id="hd-empty-matches-empty"
        ),
        # ConfineGitHubOrg
        pytest.param(ConfineGitHubOrg(43), req(github=[GITHUB]), None, id="gh"),
        pytest.param(ConfineGitHubOrg(44), req(github=[GITHUB]), Plain, id="gh-other"),
        pytest.param(ConfineGitHubOrg(99), req(github=[GITHUB]), Plain, id="gh-not-user-id"),
        pytest.param(ConfineGitHubOrg(43), req(), Plain, id="gh-no-login"),
        # MaxValidity: expiry - now must be at most the limit
        pytest.param(MaxValidity(3600), req(expiry=T0 + 3600), None, id="max-equal"),
        pytest.param(MaxValidity(3600), req(expiry=T0 + 10), None, id="max-shorter"),
        pytest.param(MaxValidity(3600), req(expiry=T0 - 10), None, id="max-past"),
        pytest.param(MaxValidity(3600), req(expiry=T0 + 3600.5), Plain, id="max-longer"),
        pytest.param(MaxValidity(0), req(expiry=T0), None, id="max-zero"),
        pytest.param(MaxValidity(0), req(expiry=T0 + 1), Plain, id="max-zero-longer"),
        # Only discharge requests will do.
        pytest.param(ConfineUser(5), fly(), InvalidAccessError, id="user-fly-access"),
        pytest.param(ConfineOrganization(1), fly(), InvalidAccessError, id="org-fly-access"),
        pytest.param(ConfineGoogleHD("x"), fly(), InvalidAccessError, id="hd-fly-access"),
        pytest.param(ConfineGitHubOrg(1), fly(), InvalidAccessError, id="gh-fly-access"),
        pytest.param(MaxValidity(1), fly(), InvalidAccessError, id="max-fly-access"),
    ],
)
def test_auth_caveat(caveat: Caveat, access: Any, expected: type[UnauthorizedError] | None) -> None:
    err = assert_prohibits(caveat, access, expected)
    if err is not None:
        assert err.caveat is caveat
    assert validate_outcome([caveat], access) == ([] if expected is None else [expected])


def test_confine_errors_are_human_messages() -> None:
    err = ConfineUser(5).prohibits(req(flyio=[BOB]))
    assert err is not None and str(err) == "must authenticate with Fly.io account 5"
    assert not err.contains(InvalidAccessError)


def test_discharge_request_always_validates() -> None:
    request = req()
    request.validate()
    assert request.now() == T0


def test_several_ticket_caveats_all_reported() -> None:
    cs = [ConfineUser(5), ConfineOrganization(12), ConfineGoogleHD("example.com"), MaxValidity(60)]
    assert validate_outcome(cs, req(flyio=[ALICE], google=[GOOGLE], expiry=T0 + 60)) == [Plain]
    assert validate_outcome(cs, req(flyio=[ALICE, BOB], google=[GOOGLE], expiry=T0 + 60)) == []
    assert validate_outcome(cs, req(expiry=T0 + 61)) == [Plain, Plain, Plain, Plain]


def test_validity_window_applies_to_discharge_requests() -> None:
    cs = [ConfineUser(5), ValidityWindow(0, int(T0) - 1)]
    assert validate_outcome(cs, req(flyio=[ALICE])) == [Plain]


# -- attestations ------------------------------------------------------------

ATTESTATIONS = [FlyioUserID(7), GitHubUserID(8), GoogleUserID(2**100 + 3)]


@pytest.mark.parametrize("attestation", ATTESTATIONS)
def test_attestation_prohibits_directly(attestation: Caveat) -> None:
    assert attestation.attestation
    assert_prohibits(attestation, fly(), BadCaveatError)
    assert_prohibits(attestation, req(), BadCaveatError)


@pytest.mark.parametrize("access", [fly(), fly(org_id=None, app_id=1), req()])
def test_attestations_are_skipped_by_validation(access: Any) -> None:
    cs = CaveatSet(ATTESTATIONS)
    alone = validate_outcome([], access)  # what the access itself says
    assert validate_outcome(cs, access) == alone
    assert validate_outcome([*ATTESTATIONS, ConfineUser(1)], access) == validate_outcome(
        [ConfineUser(1)], access
    )


def test_attestation_inside_if_present_is_not_skipped() -> None:
    # Only top-level attestations are skipped; a wrapped one fails closed.
    assert validate_outcome([IfPresent([FlyioUserID(7)], 0x1F)], fly()) == [BadCaveatError]


def test_attestations_are_not_ticket_caveats() -> None:
    assert not any(c.attestation for c in [ConfineUser(1), MaxValidity(1), ConfineGoogleHD("")])


# -- encodings ---------------------------------------------------------------

BIG = int.from_bytes(bytes([0xDE, 0xAD, 0xBE, 0xEF, 0xDE, 0xAD, 0xBE, 0xEF, 123]), "big")


def test_auth_caveats_round_trip() -> None:
    # Go's auth TestCaveatSerialization, with the 9-byte GoogleUserID.
    cs = CaveatSet(
        [
            ConfineUser(123),
            ConfineOrganization(123),
            ConfineGoogleHD("123"),
            ConfineGitHubOrg(123),
            MaxValidity(3600),
            FlyioUserID(123),
            GitHubUserID(123),
            GoogleUserID(BIG),
        ]
    )
    assert CaveatSet.from_json(cs.to_json()) == cs
    assert CaveatSet.decode(cs.encode()) == cs


@pytest.mark.parametrize(
    ("value", "body_hex"),
    [
        (0, "c400"),
        (1, "c40101"),
        (255, "c401ff"),
        (256, "c4020100"),
        (BIG, "c409deadbeefdeadbeef7b"),
        (2**64, "c409010000000000000000"),
    ],
)
def test_google_user_id_msgpack(value: int, body_hex: str) -> None:
    cav = GoogleUserID(value)
    assert cav.packed() == bytes.fromhex("9219" + body_hex)
    assert CaveatSet.decode(bytes.fromhex("9219" + body_hex)) == CaveatSet([cav])


def test_google_user_id_json_is_a_bare_number() -> None:
    cs = CaveatSet([GoogleUserID(BIG)])
    assert cs.to_json() == f'[{{"type":"GoogleUserID","body":{BIG}}}]'
    assert BIG > 2**64
    assert CaveatSet.from_json(cs.to_json()) == cs
    with pytest.raises(DecodeError):
        CaveatSet.from_json('[{"type":"GoogleUserID","body":"123"}]')
    with pytest.raises(DecodeError):
        CaveatSet.from_json('[{"type":"GoogleUserID","body":-1}]')


@pytest.mark.parametrize(
    ("caveat", "text", "body_hex"),
    [
        (ConfineUser(8), '{"type":"ConfineUser","body":{"id":8}}', "92089108"),
        (ConfineOrganization(9), '{"type":"ConfineOrganization","body":{"id":9}}', "92099109"),
        (ConfineGoogleHD("a.io"), '{"type":"ConfineGoogleHD","body":"a.io"}', "9213a4612e696f"),
        (ConfineGitHubOrg(300), '{"type":"ConfineGitHubOrg","body":300}', "9214cd012c"),
        (MaxValidity(60), '{"type":"MaxValidity","body":60}', "92153c"),
        (FlyioUserID(1), '{"type":"FlyioUserID","body":1}', "921701"),
        (GitHubUserID(2), '{"type":"GitHubUserID","body":2}', "921802"),
    ],
)
def test_auth_caveat_forms(caveat: Caveat, text: str, body_hex: str) -> None:
    cs = CaveatSet([caveat])
    assert cs.to_json() == f"[{text}]"
    assert caveat.packed() == bytes.fromhex(body_hex)
    assert CaveatSet.from_json(cs.to_json()) == cs
    assert CaveatSet.decode(cs.encode()) == cs
