"""The decoded-caveat memo: a cache that must never change an outcome."""

from __future__ import annotations

import msgpack
import pytest

from macaroons_authz import (
    DEFAULT_REGISTRY,
    Action,
    Apps,
    Macaroon,
    Organization,
    ResourceSet,
    VerificationError,
    crypto,
)
from macaroons_authz.caveats import _base

KEY = bytes(range(32))


def test_memo_hits_give_the_same_caveats_and_mac_inputs() -> None:
    DEFAULT_REGISTRY.memo.clear()
    token = Macaroon.new(b"kid", "loc", KEY)
    token.add(Organization(1, Action.ALL), Apps(ResourceSet({7: Action.READ})))
    data = token.encode()
    first = Macaroon.decode(data)
    # Each caveat as a one-caveat set, and the token's whole set.
    assert len(DEFAULT_REGISTRY.memo) == 3
    second = Macaroon.decode(data)
    assert first.unsafe_caveats == second.unsafe_caveats
    assert second._packed == [c.packed() for c in token.unsafe_caveats]
    assert second.verify(KEY) == token.verify(KEY)


def test_a_token_sharing_some_caveats_takes_those_from_the_memo() -> None:
    DEFAULT_REGISTRY.memo.clear()
    org = Organization(1, Action.ALL)
    first = Macaroon.new(b"kid", "loc", KEY)
    first.add(org, Apps(ResourceSet({7: Action.READ})))
    Macaroon.decode(first.encode())
    other = Macaroon.new(b"kid", "loc", KEY)
    other.add(org, Apps(ResourceSet({8: Action.WRITE})))
    decoded = Macaroon.decode(other.encode())
    assert decoded.unsafe_caveats[0] is Macaroon.decode(first.encode()).unsafe_caveats[0]
    assert list(decoded.unsafe_caveats) == list(other.unsafe_caveats)
    assert decoded.verify(KEY) == other.verify(KEY)


def test_attenuating_a_decoded_token_leaves_the_memo_and_other_tokens_alone() -> None:
    DEFAULT_REGISTRY.memo.clear()
    token = Macaroon.new(b"kid", "loc", KEY)
    token.add(Organization(1, Action.ALL), Apps(ResourceSet({7: Action.READ})))
    data = token.encode()
    first = Macaroon.decode(data)
    first.add(Apps(ResourceSet({7: Action.NONE})))
    second = Macaroon.decode(data)
    assert len(second.unsafe_caveats) == 2
    assert len(second._packed or ()) == 2
    assert second.verify(KEY) == token.verify(KEY)
    assert first.verify(KEY) != token.verify(KEY)


def test_non_canonical_wire_shares_the_canonical_entry_and_mac() -> None:
    canonical = Organization(1234, 31).packed()
    # The same value written with an 8-byte integer: Go MACs the canonical form.
    raw_wide = b"\x92\x00\x92\xcf" + (1234).to_bytes(8, "big") + b"\x1f"
    nonce = [b"kid", b"r" * 16, False]
    tail = crypto.mac(crypto.mac(KEY, msgpack.packb(nonce)), canonical)
    head = b"\x94" + msgpack.packb(nonce) + msgpack.packb("loc") + b"\x92" + raw_wide[1:]
    data = head + msgpack.packb(tail)
    for _ in range(2):  # a miss, then a hit
        assert [c.name for c in Macaroon.decode(data).verify(KEY)] == ["Organization"]
    # MACed over the wide wire bytes instead, it must fail, memo or not.
    bad_tail = crypto.mac(crypto.mac(KEY, msgpack.packb(nonce)), raw_wide)
    bad = head + msgpack.packb(bad_tail)
    for _ in range(2):
        with pytest.raises(VerificationError):
            Macaroon.decode(bad).verify(KEY)


def test_memo_is_bounded_and_cleared_by_registration() -> None:
    registry = DEFAULT_REGISTRY.copy()
    assert registry.memo == {}
    for i in range(_base.MEMO_ENTRIES + 10):
        token = Macaroon.new(b"kid", "loc", KEY)
        token.add(Organization(i, Action.READ))
        Macaroon.decode(token.encode(), registry)
    assert len(registry.memo) <= _base.MEMO_ENTRIES
    import attrs

    @attrs.frozen
    class Private(_base.Caveat):
        value: int
        type_number = 2**48 + 77
        name = "Private"

    registry.register(Private)
    assert registry.memo == {}
