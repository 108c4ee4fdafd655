"""Verifier: headers of several tokens, unknown KIDs, rotated keys, expiry."""

from __future__ import annotations

import pytest

from macaroons_authz import (
    Action,
    ConfineOrganization,
    DecodeError,
    FlyAccess,
    FlyioUserID,
    Macaroon,
    MemoryKeyring,
    ResourceUnspecifiedError,
    UnauthorizedError,
    UnauthorizedForActionError,
    UnauthorizedForResourceError,
    ValidityWindow,
    VerificationError,
    Verifier,
    app_token,
    discharge_ticket,
    encode_token,
    new_encryption_key,
    org_token,
    to_header,
)

NOW = 1_700_000_000
ORG, APP = 1234, 42
AUTH = "https://auth.example"


def access(**kw: object) -> FlyAccess:
    fields: dict[str, object] = {"org_id": ORG, "app_id": APP, "action": Action.READ, "at": NOW}
    fields.update(kw)
    return FlyAccess(**fields)  # type: ignore[arg-type]


@pytest.fixture
def ring() -> MemoryKeyring:
    ring = MemoryKeyring()
    ring.generate()
    return ring


def test_authorize_allows_and_returns_the_allowing_caveats(ring: MemoryKeyring) -> None:
    token = app_token(ring.current(), ORG, [APP], actions=Action.READ)
    caveats = Verifier(ring).authorize(to_header(token), access())
    assert [c.name for c in caveats] == ["Organization", "Action", "Apps"]


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"app_id": 43}, UnauthorizedForResourceError),
        ({"action": Action.WRITE}, UnauthorizedForActionError),
        ({"app_id": None, "feature": "wg"}, ResourceUnspecifiedError),
    ],
)
def test_authorize_denies_with_the_error_class(
    ring: MemoryKeyring, kw: dict[str, object], error: type[UnauthorizedError]
) -> None:
    header = to_header(app_token(ring.current(), ORG, [APP], actions=Action.READ))
    with pytest.raises(UnauthorizedError) as info:
        Verifier(ring).authorize(header, access(**kw))
    assert info.value.contains(error)


def test_expired_window_is_denied_only_after_not_after(ring: MemoryKeyring) -> None:
    token = org_token(ring.current(), ORG, expires_in=60, now=NOW)
    verifier = Verifier(ring)
    header = to_header(token)
    verifier.authorize(header, access(at=NOW + 60))
    with pytest.raises(UnauthorizedError, match="expired"):
        verifier.authorize(header, access(at=NOW + 60.5))
    with pytest.raises(UnauthorizedError, match="not valid before"):
        verifier.authorize(header, access(at=NOW - 1))


def test_unknown_kid_is_a_verification_error(ring: MemoryKeyring) -> None:
    other = MemoryKeyring()
    other.generate()
    header = to_header(org_token(other.current(), ORG))
    with pytest.raises(VerificationError, match="unknown KID"):
        Verifier(ring).verify(header)


def test_rotated_and_retired_keys_still_verify_until_removed(ring: MemoryKeyring) -> None:
    old = ring.current()
    old_header = to_header(org_token(old, ORG))
    new_kid = ring.generate()
    assert ring.current().kid == new_kid
    verifier = Verifier(ring)
    verifier.authorize(old_header, access())
    verifier.authorize(to_header(org_token(ring.current(), ORG)), access())
    ring.retire(old.kid)
    assert ring.current().kid == new_kid
    verifier.authorize(old_header, access())
    ring.remove(old.kid)
    with pytest.raises(VerificationError, match="unknown KID"):
        verifier.verify(old_header)


def test_wrong_key_under_a_known_kid_fails(ring: MemoryKeyring) -> None:
    forged = Macaroon.new(ring.current().kid, "https://api.fly.io/v1", bytes(32))
    with pytest.raises(VerificationError, match="invalid"):
        Verifier(ring).verify(to_header(forged))


def test_header_with_discharge_and_unrelated_tokens(ring: MemoryKeyring) -> None:
    tp_key = new_encryption_key()
    token = org_token(ring.current(), ORG)
    token.add_3p(tp_key, AUTH, ConfineOrganization(ORG))
    (ticket,) = token.third_party_tickets()[AUTH]
    _, discharge = discharge_ticket(tp_key, AUTH, ticket)
    discharge.add(ValidityWindow(NOW, NOW + 300), FlyioUserID(7))
    discharge.bind(token)
    stranger = org_token(MemoryKeyring([bytes(32)]).current(), ORG, location="https://elsewhere")
    header = to_header(stranger, token, "fo1_oauthtoken", discharge)

    trusting = Verifier(ring, trusted_3ps={AUTH: [tp_key]})
    caveats = trusting.authorize(header, access(at=NOW + 1))
    assert [c.name for c in caveats] == ["Organization", "ValidityWindow", "FlyioUserID"]
    # Without trust, the attestation is dropped, the rest still holds.
    assert [c.name for c in Verifier(ring).verify(header)] == ["Organization", "ValidityWindow"]
    # The discharge's own window is enforced at validation.
    with pytest.raises(UnauthorizedError, match="expired"):
        trusting.authorize(header, access(at=NOW + 301))
    # Without the discharge the header is not authentic.
    with pytest.raises(VerificationError, match="no matching discharge"):
        trusting.verify(to_header(token))


def test_header_needs_exactly_one_permission_token(ring: MemoryKeyring) -> None:
    a = org_token(ring.current(), ORG)
    b = org_token(ring.current(), ORG)
    verifier = Verifier(ring)
    with pytest.raises(DecodeError, match="multiple permission tokens"):
        verifier.verify(to_header(a, b))
    elsewhere = org_token(ring.current(), ORG, location="https://elsewhere")
    with pytest.raises(DecodeError, match="no permission token"):
        verifier.verify(to_header(elsewhere))
    with pytest.raises(DecodeError):
        verifier.verify("FlyV1 fm2_!!!")


def test_undecodable_tokens_in_a_header_are_dropped(ring: MemoryKeyring) -> None:
    token = org_token(ring.current(), ORG)
    junk = encode_token(b"\x94\x01")
    Verifier(ring).authorize(f"FlyV1 {junk},{encode_token(token)}", access())


def test_verifier_repr_shows_no_key(ring: MemoryKeyring) -> None:
    key = ring.current().key
    tp_key = new_encryption_key()
    text = repr(Verifier(ring, trusted_3ps={AUTH: [tp_key]})) + repr(ring) + repr(ring.current())
    for secret in (key, tp_key):
        assert secret.hex() not in text
        assert repr(secret) not in text


def test_a_cache_belongs_to_one_verifier(ring: MemoryKeyring) -> None:
    from macaroons_authz import VerificationCache

    cache = VerificationCache()
    Verifier(ring, cache=cache)
    with pytest.raises(ValueError, match="another verifier"):
        Verifier(ring, cache=cache, trusted_3ps={AUTH: [new_encryption_key()]})


def _decision(verifier: Verifier, header: str, acc: FlyAccess) -> object:
    try:
        return [c.packed() for c in verifier.authorize(header, acc)]
    except (DecodeError, VerificationError, UnauthorizedError) as exc:
        return (type(exc), str(exc))


def test_the_plainest_verifier_decides_as_the_general_steps(ring: MemoryKeyring) -> None:
    # A verifier with neither cache nor revocation store takes a shorter
    # lane through the decision; one with a revocation store (empty) takes
    # the general one. Every outcome must be the same.
    from macaroons_authz import MemoryRevocationStore

    tp_key = new_encryption_key()
    other = MemoryKeyring()
    other.generate()
    plain = org_token(ring.current(), ORG)
    with_3p = org_token(ring.current(), ORG)
    with_3p.add_3p(tp_key, AUTH, ConfineOrganization(ORG))
    (ticket,) = with_3p.third_party_tickets()[AUTH]
    _, discharge = discharge_ticket(tp_key, AUTH, ticket)
    discharge.add(ValidityWindow(NOW - 60, NOW + 60), FlyioUserID(7))
    expired = org_token(ring.current(), ORG)
    expired.add(ValidityWindow(NOW - 60, NOW - 1))
    foreign = org_token(other.current(), ORG)  # a KID `ring` does not hold
    headers = [
        to_header(plain),
        to_header(with_3p),  # the discharge is missing
        to_header(with_3p, discharge),
        to_header(expired),
        to_header(foreign),
        to_header(plain, plain),
        "FlyV1 fm2_AAAA",
        "FlyV1 " + encode_token(plain.encode()[:-1] + b"\x00"),  # a bad signature
        to_header(discharge),
    ]
    accesses = [access(), access(org_id=ORG + 1), access(action=Action.ALL), access(org_id=None)]
    lane = Verifier(ring, trusted_3ps={AUTH: [tp_key]})
    general = Verifier(ring, trusted_3ps={AUTH: [tp_key]}, revocations=MemoryRevocationStore())
    outcomes = set()
    for header in headers:
        for acc in accesses:
            got = _decision(lane, header, acc)
            assert got == _decision(general, header, acc), (header, acc)
            outcomes.add(type(got) if isinstance(got, list) else got[0])
    # Allowed, unauthorized, unverified and malformed headers were all met.
    assert {list, VerificationError, DecodeError} <= outcomes
    assert any(isinstance(o, type) and issubclass(o, UnauthorizedError) for o in outcomes)
