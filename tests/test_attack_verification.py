"""Attacks from issue 15: verification cost, planted identities, decoding memory.

Items 1, 4 and 7 of the issue.

Costs are asserted by counting HMAC operations (``crypto.mac`` and the steps
of ``crypto.chain``), never by timing. The counter also stops a run that
goes past what the test allows, so a regression fails fast instead of
burning minutes of CPU.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macaroons_authz import (
    MAX_CAVEATS,
    MAX_HEADER_LENGTH,
    MAX_NESTING,
    MAX_TOKEN_SIZE,
    MAX_VERIFY_MACS,
    Action,
    AttenuationError,
    BindToParentToken,
    Bundle,
    Caveat,
    Caveat3P,
    CaveatSet,
    DecodeError,
    FlyioUserID,
    GitHubUserID,
    GoogleUserID,
    IfPresent,
    Macaroon,
    MemoryKeyring,
    Nonce,
    Organization,
    UnregisteredCaveat,
    VerificationCostError,
    VerificationError,
    Verifier,
    _msgpack,
    crypto,
    discharge_ticket,
    encode_token,
    to_header,
)
from macaroons_authz.scopes import dangerous_user_id
from macaroons_authz.thirdparty.bundle import VERIFIER_HEADERS_BUDGET

LOC = "https://api.example/v1"
TP = "https://auth.example"
TICKET = b"t"


class MacCounter:
    """Counts HMAC operations; fails the test once more than *limit* are made."""

    def __init__(self, limit: int) -> None:
        self.count = 0
        self.limit = limit

    def add(self, n: int) -> None:
        self.count += n
        if self.count > self.limit:
            raise AssertionError(f"more than {self.limit} HMAC operations")


@pytest.fixture
def macs(monkeypatch: pytest.MonkeyPatch) -> MacCounter:
    counter = MacCounter(10**9)
    mac, chain, chain_end = crypto.mac, crypto.chain, crypto.chain_end

    def counting_mac(key: bytes, msg: bytes) -> bytes:
        counter.add(1)
        return mac(key, msg)

    def counting_chain(key: bytes, msgs: Iterable[bytes]) -> list[bytes]:
        msgs = list(msgs)
        counter.add(len(msgs))
        return chain(key, msgs)

    def counting_chain_end(key: bytes, msgs: Iterable[bytes]) -> bytes:
        msgs = list(msgs)
        counter.add(len(msgs))
        return chain_end(key, msgs)

    monkeypatch.setattr(crypto, "mac", counting_mac)
    monkeypatch.setattr(crypto, "chain", counting_chain)
    monkeypatch.setattr(crypto, "chain_end", counting_chain_end)
    return counter


def forge(nonce: Nonce, location: str, key: bytes, caveats: Sequence[Caveat]) -> Macaroon:
    """A token signed under *key* with *caveats*, bypassing ``add``'s rules.

    What an attacker builds from a token they hold (attenuation needs no
    key) or a discharge they invent. A third-party caveat with a discharge
    key gets its verifier key sealed under the tail before it, as ``add``
    does.
    """
    tail = crypto.mac(key, nonce.encode())
    done: list[Caveat] = []
    for cav in caveats:
        if isinstance(cav, Caveat3P) and cav.discharge_key is not None:
            cav = Caveat3P(cav.location, crypto.seal(tail, cav.discharge_key), cav.ticket)
        done.append(cav)
        tail = crypto.mac(tail, cav.packed())
    if nonce.proof:
        tail = crypto.finalize(tail)
    return Macaroon.decode(Macaroon(nonce, location, done, tail, finalized=True).encode())


def permission(key: bytes, caveats: Sequence[Caveat]) -> Macaroon:
    return forge(Nonce(b"kid", os.urandom(16), False), LOC, key, caveats)


def discharge(key: bytes, n_caveats: int, ticket: bytes = TICKET) -> Macaroon:
    """A proof for *ticket*: right if *key* is the ticket's discharge key."""
    cavs = [Organization(i, Action.READ) for i in range(n_caveats)]
    return forge(Nonce(ticket, os.urandom(16), True), TP, key, cavs)


def keyring(key: bytes) -> MemoryKeyring:
    """A keyring holding *key* under the KID ``b"kid"`` that the tokens here use."""
    ring = MemoryKeyring()
    ring.add(key, b"kid")
    return ring


def shared_ticket_caveats(n: int, rn: bytes) -> list[Caveat]:
    return [Caveat3P(f"l{i}", None, TICKET, discharge_key=rn) for i in range(n)]


# -- item 1: cost ------------------------------------------------------------


def test_3000_third_party_caveats_on_one_ticket_fail_before_any_mac(macs: MacCounter) -> None:
    """The issue's attack: 3,000 3P caveats, 250 wrong discharges of 300 caveats, one right."""
    key, rn = os.urandom(32), os.urandom(32)
    token = permission(key, shared_ticket_caveats(3000, rn))
    wrong = [discharge(os.urandom(32), 300) for _ in range(250)]
    header = to_header(token, *wrong, discharge(rn, 0))
    assert len(header) <= MAX_HEADER_LENGTH
    verifier = Verifier(keyring(key), location=LOC)
    macs.count, macs.limit = 0, 0
    with pytest.raises(VerificationError, match="two third-party caveats carry one ticket"):
        verifier.verify(header)
    assert macs.count == 0


def test_two_third_party_caveats_on_one_ticket_fail_even_when_discharged() -> None:
    key, rn = os.urandom(32), os.urandom(32)
    token = permission(key, shared_ticket_caveats(2, rn))
    with pytest.raises(VerificationError, match="carry one ticket"):
        token.verify(key, [discharge(rn, 0)])
    # One of them alone verifies with the same discharge.
    assert list(permission(key, shared_ticket_caveats(1, rn)).verify(key, [discharge(rn, 0)])) == []


def test_add_refuses_a_second_third_party_caveat_with_a_used_ticket() -> None:
    key, rn = os.urandom(32), os.urandom(32)
    token = Macaroon.new(b"kid", LOC, key)
    first, second = shared_ticket_caveats(2, rn)
    token.add(first)
    before = token.encode()
    with pytest.raises(AttenuationError, match="multiple 3ps with one ticket"):
        token.add(second)
    assert token.encode() == before
    # Nor in one call, and nothing of the call is added.
    fresh = Macaroon.new(b"kid", LOC, key)
    with pytest.raises(AttenuationError, match="multiple 3ps with one ticket"):
        fresh.add(Organization(1, Action.ALL), first, second)
    assert len(fresh.unsafe_caveats) == 0


def test_wrong_discharges_are_each_checked_once(macs: MacCounter) -> None:
    """250 wrong discharges of 300 caveats, each sent three times, then the right one."""
    key, rn = os.urandom(32), os.urandom(32)
    token = permission(key, [Organization(1, Action.ALL), *shared_ticket_caveats(1, rn)])
    wrong = [discharge(os.urandom(32), 300).encode() for _ in range(250)]
    right = discharge(rn, 1)
    # The token's chain (nonce + 2 caveats), each wrong discharge once
    # (nonce + 300 + finalization), the right one (nonce + 1 + finalization).
    expected = 3 + 250 * 302 + 3
    macs.count, macs.limit = 0, expected
    caveats = token.verify(key, [*wrong, *wrong, *wrong, right])
    assert list(caveats) == [Organization(1, Action.ALL), Organization(0, Action.READ)]
    assert macs.count == expected


def test_a_discharge_shared_by_the_tokens_of_a_bundle_is_checked_once(
    macs: MacCounter,
) -> None:
    key, tp_key = os.urandom(32), os.urandom(32)
    ring = keyring(key)
    tokens = [Macaroon.new(b"kid", LOC, key) for _ in range(20)]
    for i, t in enumerate(tokens):
        t.add(Organization(i, Action.ALL))
    bundle = Bundle.parse(to_header(*tokens), LOC)
    bundle.attenuate(Caveat3P.new(tp_key, TP))
    (ticket,) = bundle.undischarged_tickets()[TP]
    _, dm = discharge_ticket(tp_key, TP, ticket)
    dm.add(*[Organization(1000 + i, Action.READ) for i in range(500)])
    bundle.add_discharges(dm)
    macs.count = 0
    assert len(bundle.verify(ring)) == 20
    # Each token's chain (nonce + 2 caveats), the discharge's once (nonce + 500 + finalization).
    assert macs.count == 20 * 3 + 502


def test_verification_stops_at_the_mac_cap(macs: MacCounter) -> None:
    """More wrong discharges than a header can hold: refused at MAX_VERIFY_MACS."""
    key, rn = os.urandom(32), os.urandom(32)
    token = permission(key, shared_ticket_caveats(1, rn))
    one = discharge(os.urandom(32), 4096)
    caveats, packs = tuple(one.unsafe_caveats), one._packs()
    nonce = one.nonce.encode()
    # 130 distinct wrong discharges of 4,096 caveats (4,098 operations each).
    wrong = [
        Macaroon._from_canonical(nonce, TICKET, True, TP, caveats, packs, os.urandom(32))
        for _ in range(130)
    ]
    assert MAX_VERIFY_MACS < 130 * 4098
    macs.count, macs.limit = 0, MAX_VERIFY_MACS
    with pytest.raises(VerificationCostError, match="more than 524288 HMAC operations"):
        token.verify(key, [*wrong, discharge(rn, 0)])
    assert macs.count <= MAX_VERIFY_MACS


def test_discharge_binding_ids_of_every_length_match_as_prefixes() -> None:
    """Bindings are matched by set lookups per length: same answers as prefix matching."""
    key, tp_key = os.urandom(32), os.urandom(32)
    token = Macaroon.new(b"kid", LOC, key)
    c3p = Caveat3P.new(tp_key, TP)
    token.add(c3p)
    token.add(Organization(1, Action.ALL))
    (ticket,) = token.third_party_tickets()[TP]
    tails = crypto.chain(key, [token.nonce.encode(), *token._packs()])
    digest = crypto.sha256(tails[-1])
    for n in (0, 1, 16, 32):
        _, dm = discharge_ticket(tp_key, TP, ticket)
        dm.add(BindToParentToken(digest[:n]))
        token.verify(key, [dm.encode()])
    for bad in (digest + b"\x00", bytes([digest[0] ^ 1]) + digest[1:16]):
        _, dm = discharge_ticket(tp_key, TP, ticket)
        dm.add(BindToParentToken(bad))
        with pytest.raises(VerificationError, match="bound to different parent"):
            token.verify(key, [dm.encode()])


# -- item 4: identities nested in IfPresent ------------------------------------


@pytest.mark.parametrize("identity", [GoogleUserID(42), GitHubUserID(42), FlyioUserID(42)])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_add_refuses_attestations_nested_in_if_present(identity: Caveat, depth: int) -> None:
    cav: Caveat = identity
    for _ in range(depth):
        cav = IfPresent((Organization(1, Action.ALL), cav), Action.ALL)
    token = Macaroon.new(b"kid", LOC, os.urandom(32))
    with pytest.raises(AttenuationError, match="attestations to non-proof"):
        token.add(cav)
    assert len(token.unsafe_caveats) == 0


@pytest.mark.parametrize("depth", [1, 2])
def test_a_non_proof_token_with_a_nested_attestation_fails_verification(depth: int) -> None:
    key = os.urandom(32)
    cav: Caveat = GoogleUserID(42)
    for _ in range(depth):
        cav = IfPresent((cav,), Action.ALL)
    token = permission(key, [cav])
    with pytest.raises(VerificationError, match="attestation in non-proof"):
        token.verify(key)


@pytest.mark.parametrize("depth", [1, 2])
def test_an_untrusted_discharge_with_a_nested_attestation_fails(depth: int) -> None:
    tp_key = os.urandom(32)
    cav: Caveat = FlyioUserID(666)
    for _ in range(depth):
        cav = IfPresent((cav,), Action.ALL)
    key = os.urandom(32)
    token = Macaroon.new(b"kid", LOC, key)
    token.add_3p(tp_key, TP)
    (ticket,) = token.third_party_tickets()[TP]
    _, dm = discharge_ticket(tp_key, TP, ticket)
    dm.add(cav)
    with pytest.raises(VerificationError, match="attestation in IfPresent of untrusted discharge"):
        token.verify(key, [dm.encode()])
    # Trusted, the same discharge's identity is returned.
    trusted = token.verify(key, [dm.encode()], {TP: [tp_key]})
    assert trusted.of_type(FlyioUserID) == [FlyioUserID(666)]
    assert dangerous_user_id(trusted) == 666


def test_a_planted_nested_identity_is_never_returned() -> None:
    """The issue's attack: IfPresent((GoogleUserID(victim),), ALL) on a plain token."""
    key = os.urandom(32)
    token = permission(key, [IfPresent((FlyioUserID(1), GoogleUserID(7)), Action.ALL)])
    with pytest.raises(VerificationError):
        token.verify(key)
    verifier = Verifier(keyring(key), location=LOC)
    with pytest.raises(VerificationError, match="attestation in non-proof"):
        verifier.verify(to_header(token))


# -- item 7: decoding allocates no more than its input when it refuses a count --


def _token_with_set(set_bytes: bytes) -> bytes:
    """A token whose caveat set is the raw *set_bytes* (as an attacker writes it)."""
    nonce = Nonce(b"kid", b"r" * 16, False).encode()
    return b"\x94" + nonce + b"\xa3loc" + set_bytes + b"\xc4\x20" + b"t" * 32


def _array32(n: int) -> bytes:
    return b"\xdd" + n.to_bytes(4, "big")


HOSTILE_SETS = {
    # The issue's: a caveat set of 255,000 empty maps (peaked at 17.9 MiB).
    "255000 empty maps": _array32(255_000) + b"\x80" * 255_000,
    "255000 empty arrays": _array32(255_000) + b"\x90" * 255_000,
    # A body that is a map of 40,000 pairs.
    "map of 40000 pairs": b"\x92\x04\xde\x9c\x40"
    + b"".join(b"\xcd" + i.to_bytes(2, "big") + b"\x01" for i in range(40_000)),
    # An IfPresent whose nested set is 200,000 empty maps.
    "nested set of 200000 maps": b"\x92\x0d\x92" + _array32(200_000) + b"\x80" * 200_000 + b"\x00",
    # Arrays nested 200,000 deep (refused by msgpack's depth limit before too).
    "arrays 200000 deep": b"\x92\x0d" + b"\x91" * 200_000 + b"\x00",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SETS))
def test_a_token_refused_for_a_count_allocates_about_its_size(name: str) -> None:
    data = _token_with_set(HOSTILE_SETS[name])
    assert len(data) <= MAX_TOKEN_SIZE
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            Macaroon.decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.1 * len(data) + 64 * 1024, (name, peak, len(data))


def test_array_items_refuses_a_long_array_before_listing_it() -> None:
    data = _array32(200_000) + b"\x80" * 200_000
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="more than 8192"):
            CaveatSet.decode(data)
        with pytest.raises(DecodeError, match="more than 8192"):
            _msgpack.array_items(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.1 * len(data) + 64 * 1024


def test_containers_up_to_the_limit_still_decode() -> None:
    """8,192 elements (a set of MAX_CAVEATS caveats) is within the limit."""
    key = os.urandom(32)
    token = Macaroon.new(b"kid", LOC, key)
    token.add(*[Organization(i, Action.READ) for i in range(MAX_CAVEATS)])
    decoded = Macaroon.decode(token.encode())
    assert len(decoded.unsafe_caveats) == MAX_CAVEATS
    decoded.verify(key)
    assert _msgpack.unpack(b"\xdc\x20\x00" + b"\x00" * 8192) == [0] * 8192
    with pytest.raises(DecodeError, match="more than 8192 elements in a container"):
        _msgpack.unpack(b"\xdc\x20\x01" + b"\x00" * 8193)


# -- fuzzing: many third-party caveats and discharges, huge container counts --


@given(
    n_3p=st.integers(1, 6),
    tickets=st.lists(st.integers(0, 3), min_size=6, max_size=6),
    discharges=st.lists(
        st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, 20), st.integers(1, 3)),
        max_size=8,
    ),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_verification_work_is_bounded_by_the_distinct_tokens(
    n_3p: int, tickets: list[int], discharges: list[tuple[int, bool, int, int]]
) -> None:
    """Any mix of 3P caveats (tickets shared or not) and discharges (right,
    wrong, repeated): verification answers with a VerificationError or the
    caveats, spending at most one chain per distinct token."""
    key = os.urandom(32)
    rns = [os.urandom(32) for _ in range(4)]
    cavs: list[Caveat] = [
        Caveat3P(f"l{i}", None, bytes([tickets[i]]), discharge_key=rns[tickets[i]])
        for i in range(n_3p)
    ]
    token = permission(key, cavs)
    sent: list[bytes] = []
    for ticket, right, n_caveats, copies in discharges:
        d = discharge(rns[ticket] if right else os.urandom(32), n_caveats, bytes([ticket]))
        sent += [d.encode()] * copies
    bound = len(cavs) + 1 + sum(len(Macaroon.decode(d).unsafe_caveats) + 2 for d in set(sent))
    counter = MacCounter(bound)
    mac, chain = crypto.mac, crypto.chain

    def counting_chain(k: bytes, msgs: Iterable[bytes]) -> list[bytes]:
        msgs = list(msgs)
        counter.add(len(msgs))
        return chain(k, msgs)

    def counting_mac(k: bytes, msg: bytes) -> bytes:
        counter.add(1)
        return mac(k, msg)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(crypto, "chain", counting_chain)
        mp.setattr(crypto, "mac", counting_mac)
        try:
            token.verify(key, sent)
            outcome = "verified"
        except VerificationError:
            outcome = "refused"
    shared = len({c.ticket for c in cavs if isinstance(c, Caveat3P)}) < n_3p
    if shared:
        assert outcome == "refused" and counter.count == 0
    assert counter.count <= bound


_HEADERS = st.sampled_from([b"\xdc", b"\xdd", b"\xde", b"\xdf"])


@given(
    head=_HEADERS,
    count=st.integers(8193, 300_000),
    filler=st.sampled_from([b"\x80", b"\x90", b"\x00", b"\xa1a"]),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_huge_container_counts_are_refused_before_they_are_built(
    head: bytes, count: int, filler: bytes
) -> None:
    """An array or map header over the limit, inside an IfPresent, is refused before it is built."""
    size = 4 if head in (b"\xdd", b"\xdf") else 2
    count = min(count, 2**16 - 1) if size == 2 else count
    pairs = 2 if head in (b"\xde", b"\xdf") else 1
    body = head + count.to_bytes(size, "big") + filler * min(count * pairs, 60_000)
    data = _token_with_set(b"\x92\x0d\x92" + body + b"\x00")
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            Macaroon.decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.1 * len(data) + 64 * 1024


# -- issue 16: add refuses what decode would refuse ----------------------------


def _nested(depth: int) -> Caveat:
    cav: Caveat = Organization(1, Action.ALL)
    for _ in range(depth):
        cav = IfPresent((cav,), Action.ALL)
    return cav


def test_add_refuses_if_present_nested_past_what_decode_reads() -> None:
    token = Macaroon.new(b"kid", LOC, os.urandom(32))
    token.add(_nested(MAX_NESTING))
    assert Macaroon.decode(token.encode()).unsafe_caveats == token.unsafe_caveats
    before = token.encode()
    with pytest.raises(AttenuationError, match="would not decode: caveats nested too deeply"):
        token.add(Organization(2, Action.ALL), _nested(MAX_NESTING + 1))
    assert token.encode() == before
    # What decode refuses, for the record: the same caveat in a forged token.
    key = os.urandom(32)
    with pytest.raises(DecodeError, match="nested too deeply"):
        Macaroon.decode(permission_bytes(key, [_nested(MAX_NESTING + 1)]))


def permission_bytes(key: bytes, caveats: Sequence[Caveat]) -> bytes:
    nonce = Nonce(b"kid", os.urandom(16), False)
    tail = crypto.chain(key, [nonce.encode(), *(c.packed() for c in caveats)])[-1]
    return Macaroon(nonce, LOC, caveats, tail, finalized=True).encode()


def test_add_refuses_more_caveats_than_a_token_may_hold() -> None:
    token = Macaroon.new(b"kid", LOC, os.urandom(32))
    token.add(*[Organization(i, Action.READ) for i in range(MAX_CAVEATS - 1)])
    with pytest.raises(AttenuationError, match=f"at most {MAX_CAVEATS} caveats"):
        token.add(Organization(10**6, Action.READ), Organization(10**6 + 1, Action.READ))
    token.add(Organization(10**6, Action.READ))
    assert len(Macaroon.decode(token.encode()).unsafe_caveats) == MAX_CAVEATS


def test_add_refuses_a_caveat_holding_more_elements_than_decode_reads() -> None:
    token = Macaroon.new(b"kid", LOC, os.urandom(32))
    wide = IfPresent([Organization(i, Action.READ) for i in range(MAX_CAVEATS + 1)], Action.ALL)
    with pytest.raises(AttenuationError, match="would not decode"):
        token.add(wide)
    assert len(token.unsafe_caveats) == 0


def test_add_refuses_a_token_larger_than_decode_reads() -> None:
    token = Macaroon.new(b"kid", LOC, os.urandom(32))
    big = [UnregisteredCaveat((1 << 40) + i, _msgpack.pack(b"x" * 70_000)) for i in range(4)]
    token.add(*big[:3])
    assert Macaroon.decode(token.encode()).encode() == token.encode()
    before = token.encode()
    with pytest.raises(AttenuationError, match=f"larger than {MAX_TOKEN_SIZE} bytes"):
        token.add(big[3])
    assert token.encode() == before


def test_a_bundle_hands_its_verifier_a_bounded_total_of_headers() -> None:
    """Many valid permission tokens sharing one large discharge, through a Verifier.

    The verifier decodes each permission token's header afresh, discharges
    included: past VERIFIER_HEADERS_BUDGET characters in all, the rest fail
    with VerificationCostError instead of costing tokens x discharge.
    """
    key, tp_key = os.urandom(32), os.urandom(32)
    base = Macaroon.new(b"kid", LOC, key)
    tokens = []
    for i in range(150):
        t = base.copy()
        t.add(Organization(i, Action.ALL))
        tokens.append(t)
    bundle = Bundle.parse(to_header(*tokens), LOC)
    bundle.attenuate(Caveat3P.new(tp_key, TP))
    (ticket,) = bundle.undischarged_tickets()[TP]
    _, dm = discharge_ticket(tp_key, TP, ticket)
    dm.add(*[Organization(10_000 + i, Action.READ) for i in range(4000)])
    bundle.add_discharges(dm)
    assert len(bundle.header()) <= MAX_HEADER_LENGTH
    per_token = len(f"FlyV1 {bundle.permission_tokens()[0].text},{encode_token(dm)}")
    fits = VERIFIER_HEADERS_BUDGET // per_token
    assert fits < 150
    verifier = Verifier(keyring(key), location=LOC)
    verified = bundle.verify(verifier)
    assert len(verified) == fits
    assert len(bundle.failed) == 150 - fits
    assert all(isinstance(f.error, VerificationCostError) for f in bundle.failed)
