"""SSO identities: Google id_tokens, GitHub responses, and the discharges minted from them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from macaroons_authz import (
    Action,
    ConfineGitHubOrg,
    ConfineGoogleHD,
    ConfineOrganization,
    ConfineUser,
    DischargeRequest,
    ExpiredTokenError,
    FlyAccess,
    FlyioIdentity,
    GitHubIdentity,
    GoogleIdentity,
    GoogleUserID,
    IdentityError,
    InvalidSignatureError,
    Macaroon,
    MalformedIdentityError,
    MaxValidity,
    MemoryKeyring,
    MissingHostedDomainError,
    NotYetValidError,
    UnauthorizedError,
    UnknownSigningKeyError,
    UnsupportedAlgorithmError,
    ValidityWindow,
    VerificationError,
    Verifier,
    WrongAudienceError,
    WrongHostedDomainError,
    WrongIssuerError,
    WrongNonceError,
    decode_token,
    discharge_request,
    encode_token,
    github_identity,
    issue_discharge,
    new_encryption_key,
    org_token,
    to_header,
    verify_google_id_token,
)

NOW = 1_700_000_000
CLIENT_ID = "1234-abc.apps.googleusercontent.com"
SUB = "110169484474386276334"
AUTH = "https://auth.example"
ORG = 77


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64url(n), "e": b64url(e)}


@pytest.fixture(scope="module")
def google_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks(google_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return {"keys": [jwk(other_key, "k0"), jwk(google_key, "k1")]}


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": CLIENT_ID,
        "azp": CLIENT_ID,
        "sub": SUB,
        "hd": "example.com",
        "email": "ada@example.com",
        "email_verified": True,
        "iat": NOW - 10,
        "exp": NOW + 3590,
        "nonce": "n-0S6_WzA2Mj",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


Signer = Callable[..., str]


@pytest.fixture(scope="module")
def sign(google_key: rsa.RSAPrivateKey) -> Signer:
    def sign(
        payload: dict[str, Any],
        *,
        key: rsa.RSAPrivateKey | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        head = {"alg": "RS256", "kid": "k1", "typ": "JWT"} if header is None else header
        signing_input = (
            f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(payload).encode())}"
        )
        signature = (key or google_key).sign(
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{b64url(signature)}"

    return sign


def check(token: str, jwks: dict[str, Any], **kw: Any) -> GoogleIdentity:
    options: dict[str, Any] = {"audience": CLIENT_ID, "now": NOW}
    options.update(kw)
    return verify_google_id_token(token, jwks, **options)


# -- Google id_tokens ----------------------------------------------------------


def test_valid_id_token(sign: Signer, jwks: dict[str, Any]) -> None:
    who = check(sign(claims()), jwks, nonce="n-0S6_WzA2Mj", hosted_domain="example.com")
    assert who == GoogleIdentity(int(SUB), hd="example.com", email="ada@example.com")
    # The short issuer form is Google's too; several client ids may be ours.
    token = sign(claims(iss="accounts.google.com"))
    assert check(token, jwks, audience=["other-client", CLIENT_ID]).user_id == int(SUB)


def test_unverified_email_is_not_kept(sign: Signer, jwks: dict[str, Any]) -> None:
    assert check(sign(claims(email_verified=False)), jwks).email == ""


def test_consumer_account_has_no_hosted_domain(sign: Signer, jwks: dict[str, Any]) -> None:
    assert check(sign(claims(hd=None)), jwks).hd == ""


@pytest.mark.parametrize(
    ("payload", "options", "error"),
    [
        (claims(iss="https://evil.example"), {}, WrongIssuerError),
        (claims(aud="someone-else"), {}, WrongAudienceError),
        (claims(aud=[CLIENT_ID, "someone-else"]), {}, WrongAudienceError),
        (claims(aud=[]), {}, WrongAudienceError),
        (
            claims(aud=[CLIENT_ID, "second"], azp=None),
            {"audience": [CLIENT_ID, "second"]},
            WrongAudienceError,
        ),
        (
            claims(aud=[CLIENT_ID, "second"], azp="third"),
            {"audience": [CLIENT_ID, "second"]},
            WrongAudienceError,
        ),
        (claims(exp=NOW - 61), {}, ExpiredTokenError),
        (claims(exp=NOW - 1), {"max_skew": 0}, ExpiredTokenError),
        (claims(iat=NOW + 61), {}, NotYetValidError),
        (claims(nbf=NOW + 61), {}, NotYetValidError),
        (claims(), {"nonce": "another-nonce"}, WrongNonceError),
        (claims(nonce=None), {"nonce": "n-0S6_WzA2Mj"}, WrongNonceError),
        (claims(hd=None), {"hosted_domain": "example.com"}, MissingHostedDomainError),
        (claims(hd="evil.example"), {"hosted_domain": "example.com"}, WrongHostedDomainError),
        (claims(sub="0110169484474386276334"), {}, MalformedIdentityError),
        (claims(sub="abc"), {}, MalformedIdentityError),
        (claims(sub=12), {}, MalformedIdentityError),
        (claims(exp="tomorrow"), {}, MalformedIdentityError),
        (claims(exp=True), {}, MalformedIdentityError),
        (claims(aud=7), {}, MalformedIdentityError),
    ],
)
def test_claims_are_checked_each_with_its_own_error(
    sign: Signer,
    jwks: dict[str, Any],
    payload: dict[str, Any],
    options: dict[str, Any],
    error: type[IdentityError],
) -> None:
    token = sign(payload)
    with pytest.raises(error) as info:
        check(token, jwks, **options)
    assert isinstance(info.value, VerificationError)
    for part in token.split("."):
        assert part not in str(info.value)


def test_clock_skew_is_bounded(sign: Signer, jwks: dict[str, Any]) -> None:
    check(sign(claims(exp=NOW - 60, iat=NOW + 60)), jwks)
    with pytest.raises(ExpiredTokenError):
        check(sign(claims(exp=NOW - 60)), jwks, max_skew=59)
    with pytest.raises(ValueError, match="max_skew"):
        check(sign(claims()), jwks, max_skew=-1)


def test_wrong_signature(sign: Signer, jwks: dict[str, Any], other_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(InvalidSignatureError):
        check(sign(claims(), key=other_key), jwks)
    head, payload, signature = sign(claims()).split(".")
    forged = b64url(json.dumps(claims(sub="1")).encode())
    with pytest.raises(InvalidSignatureError):
        check(f"{head}.{forged}.{signature}", jwks)
    with pytest.raises(InvalidSignatureError):
        check(f"{head}.{payload}.", jwks)


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512", "PS256", None])
def test_only_rs256_is_accepted(sign: Signer, jwks: dict[str, Any], alg: str | None) -> None:
    header = {"kid": "k1"} if alg is None else {"alg": alg, "kid": "k1"}
    token = sign(claims(), header=header)
    with pytest.raises(UnsupportedAlgorithmError):
        check(token, jwks)
    unsigned = token.rsplit(".", 1)[0] + "."
    with pytest.raises(UnsupportedAlgorithmError):
        check(unsigned, jwks)


def test_key_is_chosen_by_kid(
    sign: Signer, jwks: dict[str, Any], other_key: rsa.RSAPrivateKey
) -> None:
    # Signed with k0's key and naming k0: verifies against k0.
    check(sign(claims(), key=other_key, header={"alg": "RS256", "kid": "k0"}), jwks)
    with pytest.raises(UnknownSigningKeyError):
        check(sign(claims(), header={"alg": "RS256", "kid": "k9"}), jwks)
    with pytest.raises(UnknownSigningKeyError):
        check(sign(claims(), header={"alg": "RS256"}), jwks)
    with pytest.raises(UnknownSigningKeyError):
        check(sign(claims()), {"keys": []})


def test_bad_key_sets_are_refused(sign: Signer, jwks: dict[str, Any]) -> None:
    token = sign(claims())
    (_, good) = jwks["keys"]
    for bad in (
        {},
        {"keys": "nope"},
        {"keys": [good, good]},
        {"keys": [{**good, "n": "!!"}]},
        {"keys": [{**good, "n": b64url(b"\x01" * 64)}]},  # 512-bit modulus
    ):
        with pytest.raises(MalformedIdentityError):
            check(token, bad)
    with pytest.raises(UnknownSigningKeyError):
        check(token, {"keys": [{**good, "kty": "EC"}]})
    with pytest.raises(UnknownSigningKeyError):
        check(token, {"keys": [{**good, "use": "enc"}]})
    with pytest.raises(UnsupportedAlgorithmError):
        check(token, {"keys": [{**good, "alg": "RS384"}]})


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + ".x",
        lambda t: t.replace(".", "", 1),
        lambda t: t.split(".")[0] + "=." + ".".join(t.split(".")[1:]),
        lambda t: "e30." + t.split(".", 1)[1],  # header {} (no alg)
        lambda t: "!!!." + t.split(".", 1)[1],
        lambda t: b64url(b"[1]") + "." + t.split(".", 1)[1],
        lambda t: b64url(b'{"alg":"RS256","alg":"none"}') + "." + t.split(".", 1)[1],
        lambda t: "x" * 20_000,
    ],
)
def test_malformed_id_tokens_are_refused(
    sign: Signer, jwks: dict[str, Any], mangle: Callable[[str], str]
) -> None:
    with pytest.raises(IdentityError):
        check(mangle(sign(claims())), jwks)


def test_duplicate_claims_are_refused(google_key: rsa.RSAPrivateKey, jwks: dict[str, Any]) -> None:
    head = b64url(b'{"alg":"RS256","kid":"k1"}')
    body = json.dumps(claims())[:-1] + ', "sub": "1"}'
    signing_input = f"{head}.{b64url(body.encode())}"
    sig = google_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(MalformedIdentityError, match="duplicate"):
        check(f"{signing_input}.{b64url(sig)}", jwks)


# -- GitHub --------------------------------------------------------------------


def test_github_identity_keeps_active_memberships_only() -> None:
    user = {"id": 583231, "login": "octocat", "name": "The Octocat"}
    memberships = [
        {"state": "active", "role": "admin", "organization": {"id": 1, "login": "a"}},
        {"state": "pending", "role": "member", "organization": {"id": 2, "login": "b"}},
        {"state": "active", "organization": {"id": 3}, "user": {"id": 583231}},
        {"state": "active", "organization": {"id": 1}},
    ]
    who = github_identity(user, memberships)
    assert who == GitHubIdentity(583231, login="octocat", org_ids=(1, 3))


@pytest.mark.parametrize(
    ("user", "memberships"),
    [
        ({"login": "octocat"}, []),
        ({"id": "583231", "login": "octocat"}, []),
        ({"id": True, "login": "octocat"}, []),
        ({"id": 1}, []),
        ({"id": 1, "login": "o"}, {"state": "active"}),
        ({"id": 1, "login": "o"}, [{"state": "active"}]),
        ({"id": 1, "login": "o"}, [{"organization": {"id": 2}}]),
        ({"id": 1, "login": "o"}, [{"state": "active", "organization": {"id": -2}}]),
        (
            {"id": 1, "login": "o"},
            [{"state": "active", "organization": {"id": 2}, "user": {"id": 9}}],
        ),
        ({"id": 1, "login": "o"}, ["active"]),
    ],
)
def test_github_identity_refuses_malformed_responses(user: Any, memberships: Any) -> None:
    with pytest.raises(MalformedIdentityError):
        github_identity(user, memberships)


def test_discharge_request_sorts_identities() -> None:
    fly = FlyioIdentity(5, (7,))
    goo = GoogleIdentity(9, hd="example.com")
    gh = GitHubIdentity(3, login="o", org_ids=(4,))
    req = discharge_request(gh, fly, goo, now=NOW)
    assert req == DischargeRequest(flyio=[fly], google=[goo], github=[gh], at=NOW)
    with pytest.raises(TypeError):
        discharge_request("alice", now=NOW)  # type: ignore[arg-type]


# -- minting discharges ----------------------------------------------------------


def ticket_for(tp_key: bytes, *caveats: Any) -> tuple[Macaroon, bytes]:
    ring = MemoryKeyring([bytes(range(32))])
    token = org_token(ring.current(), ORG)
    token.add_3p(tp_key, AUTH, *caveats)
    (ticket,) = token.third_party_tickets()[AUTH]
    return token, ticket


def test_issue_discharge_attests_identities_with_a_short_window() -> None:
    tp_key = new_encryption_key()
    token, ticket = ticket_for(tp_key, ConfineUser(5), ConfineOrganization(ORG), MaxValidity(300))
    req = discharge_request(
        FlyioIdentity(5, (ORG,)), GitHubIdentity(8, login="o"), GoogleIdentity(2**70), now=NOW
    )
    discharge = issue_discharge(tp_key, AUTH, ticket, req, now=NOW + 0.9, bind_to=token)
    assert discharge.is_proof and discharge.location == AUTH
    assert [c.name for c in discharge.unsafe_caveats] == [
        "ValidityWindow",
        "FlyioUserID",
        "GitHubUserID",
        "GoogleUserID",
        "BindToParentToken",
    ]
    assert discharge.unsafe_caveats[0] == ValidityWindow(NOW, NOW + 300)
    with pytest.raises(Exception, match="finalized"):
        discharge.add(ValidityWindow(0, 1))


def test_issue_discharge_refusal_names_every_unmet_requirement() -> None:
    tp_key = new_encryption_key()
    _, ticket = ticket_for(tp_key, ConfineUser(5), ConfineGitHubOrg(99), MaxValidity(60))
    req = discharge_request(FlyioIdentity(6), GitHubIdentity(8, login="o", org_ids=(1,)), now=NOW)
    with pytest.raises(UnauthorizedError) as info:
        issue_discharge(tp_key, AUTH, ticket, req, now=NOW)
    messages = [str(e) for e in info.value.leaves()]
    assert len(messages) == 3
    assert any("Fly.io account 5" in m for m in messages)
    assert any("organization 99" in m for m in messages)
    assert any("at most 60s" in m for m in messages)
    # MaxValidity sees the planned expiry: a short enough window passes it.
    with pytest.raises(UnauthorizedError) as info:
        issue_discharge(tp_key, AUTH, ticket, req, now=NOW, validity=60)
    assert len(list(info.value.leaves())) == 2


def test_issue_discharge_needs_an_identity_and_the_right_key() -> None:
    tp_key = new_encryption_key()
    _, ticket = ticket_for(tp_key)
    with pytest.raises(UnauthorizedError, match="no verified identity"):
        issue_discharge(tp_key, AUTH, ticket, DischargeRequest(at=NOW), now=NOW)
    with pytest.raises(VerificationError):
        issue_discharge(new_encryption_key(), AUTH, ticket, discharge_request(now=NOW), now=NOW)
    req = discharge_request(FlyioIdentity(1), now=NOW)
    with pytest.raises(ValueError, match="validity"):
        issue_discharge(tp_key, AUTH, ticket, req, now=NOW, validity=0)


def test_vector_c_discharge_through_the_helper(
    spec_vectors: Any, counter_random: Callable[[int], object]
) -> None:
    c = spec_vectors["deterministic"]["C"]
    root = Macaroon.decode(decode_token(c["root_token_str"]))
    ticket = bytes.fromhex(c["caveat3p_ticket"])
    key = bytes.fromhex(c["third_party_key"])
    counter_random(0xC0)
    req = discharge_request(FlyioIdentity(5678, (1234,)), now=NOW)
    discharge = issue_discharge(
        key, c["third_party_location"], ticket, req, now=NOW, validity=300, bind_to=root
    )
    assert encode_token(discharge) == c["discharge_token_str"]
    # The ticket asks for organization 1234: another organization is refused.
    with pytest.raises(UnauthorizedError, match="organization 1234"):
        issue_discharge(
            key,
            c["third_party_location"],
            ticket,
            discharge_request(FlyioIdentity(5678, (1,)), now=NOW),
            now=NOW,
        )


def test_google_workspace_flow_end_to_end(sign: Signer, jwks: dict[str, Any]) -> None:
    """Org token -> ticket requiring a domain -> id_token -> discharge -> authorize."""
    ring = MemoryKeyring()
    ring.generate()
    tp_key = new_encryption_key()
    token = org_token(ring.current(), ORG)
    token.add_3p(tp_key, AUTH, ConfineGoogleHD("example.com"))
    (ticket,) = token.third_party_tickets()[AUTH]
    access = FlyAccess(org_id=ORG, action=Action.READ, at=NOW + 10)

    who = check(sign(claims()), jwks)
    discharge = issue_discharge(
        tp_key, AUTH, ticket, discharge_request(who, now=NOW), now=NOW, bind_to=token
    )
    header = to_header(token, discharge)
    caveats = Verifier(ring, trusted_3ps={AUTH: [tp_key]}).authorize(header, access)
    assert caveats.of_type(GoogleUserID) == [GoogleUserID(int(SUB))]
    # Untrusted, the attestation is dropped but the header is still authentic.
    assert Verifier(ring).authorize(header, access).of_type(GoogleUserID) == []

    outsider = check(sign(claims(hd="elsewhere.example", email="eve@elsewhere.example")), jwks)
    with pytest.raises(UnauthorizedError, match=r"example\.com domain"):
        issue_discharge(tp_key, AUTH, ticket, discharge_request(outsider, now=NOW), now=NOW)
    consumer = check(sign(claims(hd=None)), jwks)
    with pytest.raises(UnauthorizedError, match=r"example\.com domain"):
        issue_discharge(tp_key, AUTH, ticket, discharge_request(consumer, now=NOW), now=NOW)
