"""Headers with several permission tokens: allowed if any token that verifies allows it (issue 20).

``fly tokens create ssh`` emits two permission tokens in one header, and
flyctl's sessions hold one per organization. Every token here is minted by
the library on throw-away keys.
"""

from __future__ import annotations

import json

import attrs
import pytest
from web_app import AT, NOW, ORG
from web_helpers import UNAUTHENTICATED_BODY, forbidden_body

from macaroons_authz import (
    MAX_PERMISSION_TOKENS,
    Action,
    ConfineOrganization,
    DecodeError,
    FlyAccess,
    FlyioUserID,
    Macaroon,
    MemoryKeyring,
    MemoryRevocationStore,
    NoTokenAllowedError,
    NoTokenVerifiedError,
    UnauthorizedError,
    UnauthorizedForResourceError,
    ValidityWindow,
    VerificationCache,
    VerificationError,
    VerifiedToken,
    Verifier,
    app_token,
    discharge_ticket,
    kid_for_key,
    new_encryption_key,
    new_signing_key,
    org_token,
    to_header,
    token_id,
)
from macaroons_authz.web import Authorized, Gate

OTHER_ORG = ORG + 1
AUTH = "https://auth.example"


def read(org: int = ORG, app: int | None = 42) -> FlyAccess:
    return FlyAccess(org_id=org, app_id=app, action=Action.READ, at=AT)


@attrs.frozen
class World:
    ring: MemoryKeyring
    ours: Macaroon  # app 42 of ORG, read only
    theirs: Macaroon  # all of OTHER_ORG
    forged: Macaroon  # the ring's KID, another key: all of ORG
    tp_key: bytes


@pytest.fixture
def world() -> World:
    ring = MemoryKeyring()
    ring.generate()
    key = ring.current()
    ours = app_token(key, ORG, [42], actions=Action.READ, expires_in=3600, now=NOW)
    theirs = org_token(key, OTHER_ORG, expires_in=3600, now=NOW)
    forged = org_token(new_signing_key(), ORG, kid=kid_for_key(key.key), expires_in=3600, now=NOW)
    return World(ring, ours, theirs, forged, new_encryption_key())


def verifier(w: World, **kw: object) -> Verifier:
    return Verifier(w.ring, trusted_3ps={AUTH: [w.tp_key]}, **kw)  # type: ignore[arg-type]


def discharged(w: World, org: int) -> tuple[Macaroon, Macaroon]:
    """A token for *org* with a third-party caveat for AUTH, and its bound discharge."""
    token = org_token(w.ring.current(), org, expires_in=3600, now=NOW)
    token.add_3p(w.tp_key, AUTH, ConfineOrganization(org))
    (ticket,) = token.third_party_tickets()[AUTH]
    _, discharge = discharge_ticket(w.tp_key, AUTH, ticket)
    discharge.add(ValidityWindow(NOW, NOW + 3600), FlyioUserID(7))
    discharge.bind(token)
    return token, discharge


# -- the decision ---------------------------------------------------------------------


def test_the_token_that_allows_decides_whichever_its_place(world: World) -> None:
    v = verifier(world)
    for header in (to_header(world.ours, world.theirs), to_header(world.theirs, world.ours)):
        ours = v.authorize_token(header, read())
        assert ours == VerifiedToken(
            token_id(world.ours), world.ring.current().kid, v.verify(to_header(world.ours))
        )
        theirs = v.authorize_token(header, read(OTHER_ORG))
        assert theirs.token_id == token_id(world.theirs)
        assert v.authorize(header, read(OTHER_ORG)) == theirs.caveats


def test_when_both_allow_the_first_in_header_order_decides(world: World) -> None:
    both = org_token(world.ring.current(), ORG, expires_in=3600, now=NOW)
    v = verifier(world)
    first = v.authorize_token(to_header(world.ours, both), read())
    assert first.token_id == token_id(world.ours)
    assert v.authorize_token(to_header(both, world.ours), read()).token_id == token_id(both)


def test_neither_allows_raises_every_tokens_reason(world: World) -> None:
    v = verifier(world)
    header = to_header(world.ours, world.theirs)
    with pytest.raises(NoTokenAllowedError) as info:
        v.authorize(header, read(app=43))
    err = info.value
    assert isinstance(err, UnauthorizedError)
    assert [(r.token_id, r.verified) for r in err.refusals] == [
        (token_id(world.ours), True),
        (token_id(world.theirs), True),
    ]
    # Each token's own error, queryable: ours refuses app 43, theirs the org.
    for refusal in err.refusals:
        assert isinstance(refusal.error, UnauthorizedError)
        assert refusal.error.contains(UnauthorizedForResourceError)
        assert refusal.kid == world.ring.current().kid
    assert err.contains(UnauthorizedForResourceError)
    leaves = [
        leaf
        for r in err.refusals
        if isinstance(r.error, UnauthorizedError)
        for leaf in r.error.leaves()
    ]
    assert list(err.leaves()) == leaves
    assert str(err).startswith("no permission token allows the access: token ")


def test_a_forged_token_beside_a_valid_one(world: World) -> None:
    v = verifier(world)
    header = to_header(world.forged, world.ours)
    assert v.authorize_token(header, read()).token_id == token_id(world.ours)
    # The forged one would allow app 43 (all of ORG) but is not authentic.
    with pytest.raises(NoTokenAllowedError) as info:
        v.authorize(header, read(app=43))
    forged, ours = info.value.refusals
    assert (forged.token_id, forged.verified, type(forged.error)) == (
        token_id(world.forged),
        False,
        VerificationError,
    )
    assert "invalid" in str(forged.error)
    assert ours.verified


def test_no_token_authentic_is_a_verification_error(world: World) -> None:
    stranger = org_token(new_signing_key(), ORG, expires_in=3600, now=NOW)
    v = verifier(world)
    with pytest.raises(NoTokenVerifiedError) as info:
        v.authorize(to_header(world.forged, stranger), read())
    assert isinstance(info.value, VerificationError)
    reasons = [str(r.error) for r in info.value.refusals]
    assert "invalid" in reasons[0]
    assert reasons[1] == f"unknown KID {stranger.nonce.kid.hex()}"  # type: ignore[union-attr]
    with pytest.raises(NoTokenVerifiedError):
        v.verify_all(to_header(world.forged, stranger))


def test_revoking_one_token_leaves_the_other(world: World) -> None:
    store = MemoryRevocationStore()
    v = verifier(world, revocations=store, cache=VerificationCache(poll_interval=0))
    both = org_token(world.ring.current(), ORG, expires_in=3600, now=NOW)
    header = to_header(world.ours, both)
    assert v.authorize_token(header, read()).token_id == token_id(world.ours)
    store.revoke(token_id(world.ours))
    assert v.authorize_token(header, read()).token_id == token_id(both)
    store.revoke(token_id(both))
    with pytest.raises(NoTokenVerifiedError) as info:
        v.authorize(header, read())
    assert [str(r.error) for r in info.value.refusals] == ["token revoked", "token revoked"]


def test_revoked_token_that_alone_allowed_gives_403_with_its_reason(world: World) -> None:
    store = MemoryRevocationStore()
    store.revoke(token_id(world.theirs))
    v = verifier(world, revocations=store)
    with pytest.raises(NoTokenAllowedError) as info:
        v.authorize(to_header(world.ours, world.theirs), read(OTHER_ORG))
    ours, theirs = info.value.refusals
    assert ours.verified and not theirs.verified
    assert str(theirs.error) == "token revoked"


def test_each_token_gets_the_discharges_of_its_own_tickets(world: World) -> None:
    a, a_discharge = discharged(world, ORG)
    b, b_discharge = discharged(world, OTHER_ORG)
    v = verifier(world)
    header = to_header(a, b, a_discharge, b_discharge)
    assert [t.token_id for t in v.verify_all(header)] == [token_id(a), token_id(b)]
    verified = v.authorize_token(header, read(OTHER_ORG))
    assert (verified.token_id, verified.caveats.of_type(FlyioUserID)) == (
        token_id(b),
        [FlyioUserID(7)],
    )
    # Without b's discharge, b fails and a still serves its own org.
    partial = to_header(a, b, a_discharge)
    assert [t.token_id for t in v.verify_all(partial)] == [token_id(a)]
    with pytest.raises(NoTokenAllowedError) as info:
        v.authorize(partial, read(OTHER_ORG))
    assert "no matching discharge" in str(info.value.refusals[1].error)
    # A revoked discharge fails only the token it discharges.
    store = MemoryRevocationStore()
    store.revoke(token_id(a_discharge))
    revoking = verifier(world, revocations=store)
    assert revoking.authorize_token(header, read(OTHER_ORG)).token_id == token_id(b)
    with pytest.raises(NoTokenAllowedError):
        revoking.authorize(header, read())


def test_verify_keeps_one_answer_per_header(world: World) -> None:
    v = verifier(world)
    header = to_header(world.ours, world.theirs)
    with pytest.raises(DecodeError, match="multiple permission tokens: verify_all"):
        v.verify(header)
    assert [t.token_id for t in v.verify_all(header)] == [
        token_id(world.ours),
        token_id(world.theirs),
    ]
    assert [t.token_id for t in v.verify_all(to_header(world.ours))] == [token_id(world.ours)]
    # The same token twice is one permission token.
    assert v.verify(to_header(world.ours, world.ours)) == v.verify(to_header(world.ours))


def test_permission_tokens_per_header_are_bounded(world: World) -> None:
    key = world.ring.current()
    tokens = [org_token(key, ORG, now=NOW) for _ in range(MAX_PERMISSION_TOKENS + 1)]
    v = verifier(world)
    with pytest.raises(DecodeError, match=f"more than {MAX_PERMISSION_TOKENS} permission tokens"):
        v.authorize(to_header(*tokens), read())
    assert v.authorize_token(to_header(*tokens[:MAX_PERMISSION_TOKENS]), read()).token_id == (
        token_id(tokens[0])
    )


def test_errors_name_no_secret(world: World) -> None:
    v = verifier(world)
    header = to_header(world.forged, world.ours, world.theirs)
    with pytest.raises(NoTokenAllowedError) as info:
        v.authorize(header, read(app=43, org=ORG + 7))
    text = str(info.value) + repr(info.value.refusals)
    for token in header.removeprefix("FlyV1 ").split(","):
        assert token not in text and token[4:40] not in text
    assert world.ring.current().key.hex() not in text


# -- the cache ------------------------------------------------------------------------


def test_each_token_is_its_own_entry_and_the_header_is_never_remembered(world: World) -> None:
    cache = VerificationCache()
    v = verifier(world, cache=cache)
    header = to_header(world.ours, world.theirs)
    v.authorize(header, read(OTHER_ORG))
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 2)
    assert header not in cache._header_keys
    # Which token allows depends on the access: both answers come from the cache.
    assert v.authorize_token(header, read()).token_id == token_id(world.ours)
    assert v.authorize_token(header, read(OTHER_ORG)).token_id == token_id(world.theirs)
    assert (cache.hits, cache.misses, len(cache)) == (3, 2, 2)
    # A header of one of them alone finds the entry its verification made.
    assert v.authorize_token(to_header(world.theirs), read(OTHER_ORG)).token_id == token_id(
        world.theirs
    )
    assert (cache.hits, cache.misses) == (4, 2)
    # The failures are not cached.
    with pytest.raises(NoTokenAllowedError):
        v.authorize(to_header(world.forged, world.ours), read(app=43))
    assert len(cache) == 2


def test_a_cached_token_with_another_discharge_is_verified_afresh(world: World) -> None:
    a, a_discharge = discharged(world, ORG)
    cache = VerificationCache()
    v = verifier(world, cache=cache)
    assert len(v.verify_all(to_header(a, world.theirs, a_discharge))) == 2
    assert len(cache) == 2
    # The same permission token with a discharge for its ticket under another key.
    (ticket,) = a.third_party_tickets()[AUTH]
    fake = Macaroon.new(ticket, AUTH, new_signing_key())
    fake.bind(a)
    header = to_header(a, world.theirs, fake)
    with pytest.raises(NoTokenAllowedError) as info:
        v.authorize(header, read())
    assert not info.value.refusals[0].verified
    assert v.authorize_token(header, read(OTHER_ORG)).token_id == token_id(world.theirs)


def test_a_revocation_reaches_the_entries_of_a_multi_token_header(world: World) -> None:
    store = MemoryRevocationStore()
    cache = VerificationCache(poll_interval=0)
    v = verifier(world, revocations=store, cache=cache)
    header = to_header(world.theirs, world.ours)
    assert v.authorize_token(header, read()).token_id == token_id(world.ours)
    assert len(cache) == 2
    store.revoke(token_id(world.ours))
    with pytest.raises(NoTokenAllowedError):
        v.authorize(header, read())
    assert len(cache) == 1  # the feed dropped the revoked token's entry


# -- through the web gate -----------------------------------------------------------


def test_the_gate_answers_200_403_and_401_for_several_tokens(world: World) -> None:
    records: list[object] = []
    gate = Gate(verifier(world), log=records.append)
    header = to_header(world.ours, world.theirs)
    allowed = gate.decide((header,), read(OTHER_ORG))
    assert isinstance(allowed, Authorized) and allowed.token_id == token_id(world.theirs)
    forbidden = gate.decide((header,), read(app=43))
    assert forbidden is not None and not isinstance(forbidden, Authorized)
    assert forbidden.status == 403
    assert json.loads(forbidden.body) == forbidden_body("Apps", "Organization")
    stranger = org_token(new_signing_key(), ORG, expires_in=3600, now=NOW)
    denied = gate.decide((to_header(world.forged, stranger),), read())
    assert denied is not None and not isinstance(denied, Authorized)
    assert (denied.status, json.loads(denied.body)) == (401, UNAUTHENTICATED_BODY)
    assert [getattr(r, "token_id", None) for r in records] == [token_id(world.theirs), None, None]


# -- the work of one header -----------------------------------------------------------


def test_the_tokens_of_one_header_share_one_hmac_budget_and_one_key_lookup(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from macaroons_authz import _verification

    class Counting(MemoryKeyring):
        calls = 0

        def key_for(self, kid: bytes) -> bytes | None:
            Counting.calls += 1
            return super().key_for(kid)

    ring = Counting([world.ring.current().key])
    key = ring.current()
    refused = [app_token(key, ORG, [i], now=NOW) for i in (1, 2, 3)]
    allowing = org_token(key, ORG, now=NOW)
    header = to_header(*refused, allowing)
    v = Verifier(ring)
    assert v.authorize_token(header, read()).token_id == token_id(allowing)
    assert Counting.calls == 1  # one KID, looked up once for the four tokens
    # A budget that covers each token alone, but not the four together.
    costs = []
    for token in (*refused, allowing):
        with _verification.verification_run():
            token.verify(key.key)
            run = _verification.RUN.get()
            assert run is not None
            costs.append(run.macs)
    monkeypatch.setattr(_verification, "MAX_VERIFY_MACS", sum(costs) - 1)
    with pytest.raises(NoTokenAllowedError) as info:
        v.authorize(header, read())
    assert [type(r.error).__name__ for r in info.value.refusals] == [
        "UnauthorizedForResourceError",
        "UnauthorizedForResourceError",
        "UnauthorizedForResourceError",
        "VerificationCostError",
    ]
    assert v.authorize_token(to_header(allowing), read()).token_id == token_id(allowing)
