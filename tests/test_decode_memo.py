"""The decoded-caveat memo: a cache that must never change an outcome."""

from __future__ import annotations

import attrs
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macaroons_authz import (
    DEFAULT_REGISTRY,
    Action,
    Apps,
    DecodeError,
    Macaroon,
    Mutations,
    Organization,
    ResourceSet,
    VerificationError,
    _decode,
    _msgpack,
    crypto,
)
from macaroons_authz._decode import set_bytes
from macaroons_authz.caveats import _base

KEY = bytes(range(32))


def _set_bytes_of(data: bytes, token: Macaroon) -> bytes | None:
    return set_bytes(data, token._nonce_packed, token.location)


def _org_and_app_token() -> Macaroon:
    token = Macaroon.new(b"kid", "loc", KEY)
    token.add(Organization(1, Action.ALL), Apps(ResourceSet({7: Action.READ})))
    return token


def test_memo_hits_give_the_same_caveats_and_mac_inputs() -> None:
    DEFAULT_REGISTRY.memo.clear()
    token = _org_and_app_token()
    data = token.encode()
    first = Macaroon.decode(data)
    # The token's whole set; its canonical caveats are not remembered alone.
    assert list(DEFAULT_REGISTRY.memo) == [data[1 + len(token.nonce.encode()) + 4 : -34]]
    second = Macaroon.decode(data)
    assert first.unsafe_caveats == second.unsafe_caveats
    assert second._packed == tuple(c.packed() for c in token.unsafe_caveats)
    assert second.verify(KEY) == token.verify(KEY)


def test_a_token_sharing_some_caveats_takes_those_from_the_memo() -> None:
    # Caveats decoded by the general path (Mutations has no fast one) are
    # remembered alone, as one-caveat sets.
    DEFAULT_REGISTRY.memo.clear()
    org = Mutations(["deleteApp"])
    first = Macaroon.new(b"kid", "loc", KEY)
    first.add(org, Apps(ResourceSet({7: Action.READ})))
    Macaroon.decode(first.encode())
    assert org.packed() in DEFAULT_REGISTRY.memo
    other = Macaroon.new(b"kid", "loc", KEY)
    other.add(org, Apps(ResourceSet({8: Action.WRITE})))
    decoded = Macaroon.decode(other.encode())
    assert decoded.unsafe_caveats[0] is Macaroon.decode(first.encode()).unsafe_caveats[0]
    assert list(decoded.unsafe_caveats) == list(other.unsafe_caveats)
    assert decoded.verify(KEY) == other.verify(KEY)


def test_attenuating_a_decoded_token_leaves_the_memo_and_other_tokens_alone() -> None:
    DEFAULT_REGISTRY.memo.clear()
    token = _org_and_app_token()
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
    for _ in range(3):  # a miss, a miss that remembers the set, then a hit
        assert [c.name for c in Macaroon.decode(data).verify(KEY)] == ["Organization"]
    # MACed over the wide wire bytes instead, it must fail, memo or not.
    bad_tail = crypto.mac(crypto.mac(KEY, msgpack.packb(nonce)), raw_wide)
    bad = head + msgpack.packb(bad_tail)
    for _ in range(3):
        with pytest.raises(VerificationError):
            Macaroon.decode(bad).verify(KEY)


def test_memo_is_bounded_and_cleared_by_registration() -> None:
    registry = DEFAULT_REGISTRY.copy()
    assert registry.memo == {}
    for i in range(_decode.MEMO_ENTRIES + 10):
        token = Macaroon.new(b"kid", "loc", KEY)
        token.add(Organization(i, Action.READ))
        Macaroon.decode(token.encode(), registry)
    assert len(registry.memo) <= _decode.MEMO_ENTRIES
    import attrs

    @attrs.frozen
    class Private(_base.Caveat):
        value: int
        type_number = 2**48 + 77
        name = "Private"

    registry.register(Private)
    assert registry.memo == {}


def _token_parts(token: Macaroon) -> tuple[bytes, bytes, bytes, bytes]:
    """(nonce, location, caveat set, tail) wire bytes of a canonical token."""
    data = token.encode()
    nonce = token.nonce.encode()
    location = msgpack.packb(token.location)
    start = 1 + len(nonce) + len(location)
    return nonce, location, data[start:-34], data[-34:]


def test_trailing_bytes_that_look_like_a_tail_do_not_confuse_the_memo() -> None:
    DEFAULT_REGISTRY.memo.clear()
    token = _org_and_app_token()
    nonce, location, caveats, tail = _token_parts(token)
    plain = b"\x94" + nonce + location + caveats + tail
    # The same token followed by a copy of its own tail (trailing bytes are ignored).
    padded = plain + tail
    for data in (padded, plain, padded):
        assert (
            _msgpack.unpack(_set_bytes_of(data, Macaroon.decode(data)) or b"")
            == (_msgpack.unpack(data)[2])
        )
        decoded = Macaroon.decode(data)
        assert list(decoded.unsafe_caveats) == list(token.unsafe_caveats)
        assert decoded.verify(KEY) == token.verify(KEY)


def test_a_tail_written_as_a_string_keeps_the_caveat_set_exact() -> None:
    # Go accepts a str where bytes are expected; a str8 tail also takes 34
    # bytes, so the set still ends at most 34 bytes before the end.
    DEFAULT_REGISTRY.memo.clear()
    token = Macaroon.new(b"kid", "loc", KEY)
    token.add(Organization(1, Action.ALL))
    nonce, location, caveats, tail = _token_parts(token)
    as_str8 = b"\xd9\x20" + tail[2:]
    data = b"\x94" + nonce + location + caveats + as_str8
    for _ in range(3):  # cold, cold again (remembering the set), then from the memo
        decoded = Macaroon.decode(data)
        assert list(decoded.unsafe_caveats) == list(token.unsafe_caveats)
        assert decoded.verify(KEY) == token.verify(KEY)


def test_a_non_canonical_nonce_or_location_never_shifts_the_memo_key() -> None:
    # Written wider than canonical, the nonce or location would move the set;
    # the memo must then not key on a guessed offset. The caveats must still
    # be those of the token, and the signature (over the canonical nonce)
    # must still hold, memo warm or cold.
    token = _org_and_app_token()
    nonce, location, caveats, tail = _token_parts(token)
    wide_nonce = b"\x93\xc5\x00\x03kid\xc5\x00\x10" + token.nonce.rnd + b"\xc2"  # type: ignore[operator]
    wide_location = b"\xda\x00\x03loc"
    assert msgpack.unpackb(wide_nonce) == msgpack.unpackb(nonce)
    for data in (
        b"\x94" + wide_nonce + location + caveats + tail,
        b"\x94" + nonce + wide_location + caveats + tail,
        b"\xdc\x00\x04" + nonce + location + caveats + tail,
    ):
        # The memo key is either refused or begins with exactly the set.
        key = _set_bytes_of(data, Macaroon.decode(data))
        assert key is None or _msgpack.unpack(key) == _msgpack.unpack(data)[2]
        for _ in range(2):
            decoded = Macaroon.decode(data)
            assert list(decoded.unsafe_caveats) == list(token.unsafe_caveats)
            assert decoded.verify(KEY) == token.verify(KEY)


# -- the known-token path: a canonical token whose set the memo holds exactly


def _fields(token: Macaroon) -> tuple[object, ...]:
    return (
        token.nonce,
        token.location,
        list(token.unsafe_caveats),
        token._packs(),
        token._tail,
        token._nonce_packed,
        token._kid,
        token._proof,
        token._finalized,
    )


def _general(data: bytes) -> Macaroon | None:
    """*data* decoded by the general path (an empty memo), or ``None`` if it is refused.

    It is decoded a second time, which leaves its set in the memo (a set
    is remembered from its second sighting on).
    """
    DEFAULT_REGISTRY.memo.clear()
    try:
        general = Macaroon.decode(data)
    except DecodeError:
        return None
    Macaroon.decode(data)
    return general


def test_a_known_canonical_token_skips_unpacking_and_decodes_the_same() -> None:
    token = _org_and_app_token()
    data = token.encode()
    general = _general(data)
    assert general is not None
    known = _decode.decode_known(Macaroon, data, DEFAULT_REGISTRY.memo)
    assert known is not None
    assert _fields(known) == _fields(general)
    assert known._nonce_packed == token.nonce.encode()
    assert known.verify(KEY) == token.verify(KEY)


def test_a_long_location_written_as_str8_takes_the_known_path() -> None:
    token = Macaroon.new(b"kid", "https://" + "x" * 40, KEY)
    token.add(Organization(1, Action.ALL), Apps(ResourceSet({7: Action.READ})))
    data = token.encode()
    assert b"\xd9\x30https://" in data
    general = _general(data)
    assert general is not None
    known = _decode.decode_known(Macaroon, data, DEFAULT_REGISTRY.memo)
    assert known is not None
    assert _fields(known) == _fields(general)


def test_a_known_proof_decodes_finalized() -> None:
    token = _org_and_app_token()
    proof = Macaroon._mint(attrs.evolve(token.nonce, proof=True), "loc", KEY)
    proof.add(*token.unsafe_caveats)
    data = proof.encode()  # encoding finalizes a proof
    general = _general(data)
    assert general is not None
    known = _decode.decode_known(Macaroon, data, DEFAULT_REGISTRY.memo)
    assert known is not None
    assert known.nonce.proof and known._finalized
    assert _fields(known) == _fields(general)


def test_the_known_path_refuses_what_it_cannot_prove() -> None:
    token = _org_and_app_token()
    nonce, location, caveats, tail = _token_parts(token)
    plain = b"\x94" + nonce + location + caveats + tail
    _general(plain)
    memo = DEFAULT_REGISTRY.memo
    assert _decode.decode_known(Macaroon, plain, memo) is not None
    wide_nonce = b"\x93\xc5\x00\x03kid\xc5\x00\x10" + token.nonce.rnd + b"\xc2"  # type: ignore[operator]
    legacy_nonce = b"\x92\xc4\x03kid\xc4\x10" + token.nonce.rnd  # type: ignore[operator]
    refused = {
        "trailing bytes": plain + b"\x00",
        "the tail copied after the token": plain + tail,
        "a wide nonce": b"\x94" + wide_nonce + location + caveats + tail,
        "a legacy nonce": b"\x94" + legacy_nonce + location + caveats + tail,
        "a location as bin": b"\x94" + nonce + b"\xc4\x03loc" + caveats + tail,
        "a location as str16": b"\x94" + nonce + b"\xda\x00\x03loc" + caveats + tail,
        "a tail as str8": b"\x94" + nonce + location + caveats + b"\xd9\x20" + tail[2:],
        "an array16 token": b"\xdc\x00\x04" + nonce + location + caveats + tail,
        "a set the memo lacks": b"\x94" + nonce + location + b"\x90" + tail,
        "a nil proof flag": b"\x94" + nonce[:-1] + b"\xc0" + location + caveats + tail,
        "a cut str8 location": b"\x94" + nonce + b"\xd9",
    }
    for what, data in refused.items():
        assert _decode.decode_known(Macaroon, data, memo) is None, what
    for end in range(len(plain)):
        assert _decode.decode_known(Macaroon, plain[:end], memo) is None


def test_a_set_written_non_canonically_is_not_marked_exact() -> None:
    # The memo entry of a wide-integer set is right for its first value, but
    # the key is not the canonical encoding, so the known path must not use it.
    DEFAULT_REGISTRY.memo.clear()
    raw_wide = b"\x92\x00\x92\xcf" + (1234).to_bytes(8, "big") + b"\x1f"
    nonce = [b"kid", b"r" * 16, False]
    tail = crypto.mac(crypto.mac(KEY, msgpack.packb(nonce)), Organization(1234, 31).packed())
    data = b"\x94" + msgpack.packb(nonce) + msgpack.packb("loc") + raw_wide + msgpack.packb(tail)
    Macaroon.decode(data)
    assert _decode.decode_known(Macaroon, data, DEFAULT_REGISTRY.memo) is None
    assert DEFAULT_REGISTRY.memo[raw_wide][2] is False  # found on that first hit
    assert [c.name for c in Macaroon.decode(data).verify(KEY)] == ["Organization"]


def test_a_genuine_tail_moved_behind_junk_is_read_where_go_reads_it() -> None:
    # Go reads the tail right after the set and ignores trailing bytes, so
    # junk in the tail's place followed by the genuine tail must not verify.
    token = _org_and_app_token()
    nonce, location, caveats, tail = _token_parts(token)
    junk = b"\xc4\x20" + bytes(32)
    data = b"\x94" + nonce + location + caveats + junk + tail
    for _ in range(3):  # cold, cold again (remembering the set), then memoized
        with pytest.raises(VerificationError):
            Macaroon.decode(data).verify(KEY)


@given(
    cut=st.integers(min_value=0, max_value=200),
    drop=st.integers(min_value=0, max_value=3),
    insert=st.binary(max_size=4),
    append=st.binary(max_size=40),
)
@settings(max_examples=400, deadline=None)
def test_the_known_path_agrees_with_the_general_path(
    cut: int, drop: int, insert: bytes, append: bytes
) -> None:
    token = _org_and_app_token()
    data = token.encode()
    cut %= len(data) + 1
    mutated = data[:cut] + insert + data[cut + drop :] + append
    _general(data)  # the memo holds the original set, marked exact
    known = _decode.decode_known(Macaroon, mutated, DEFAULT_REGISTRY.memo)
    if known is not None:
        general = _general(mutated)
        assert general is not None
        assert _fields(known) == _fields(general)
