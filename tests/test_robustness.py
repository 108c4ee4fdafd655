"""Round trips of random caveat sets, and hostile or damaged input (spec sections 2, 3, 5).

Every decoder must answer bad input with :class:`DecodeError` and nothing
else, and a damaged token that still decodes must not verify unless it
decodes to the very token that was signed (the wire form may vary where Go's
decoder is lenient: str for bin, wide ints, trailing bytes).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import math
import os
import re
from collections.abc import Callable
from typing import Any

import attrs
import msgpack
import pytest
from authz_helpers import unique_caveats
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from macaroons_authz import (
    MAX_CAVEATS,
    MAX_NESTING,
    MAX_TOKEN_SIZE,
    Action,
    ActionCaveat,
    AllowedRoles,
    AppFeatureSet,
    Apps,
    AttenuationError,
    BindToParentToken,
    Caveat,
    Caveat3P,
    CaveatSet,
    Clusters,
    Command,
    Commands,
    ConfineGitHubOrg,
    ConfineGoogleHD,
    ConfineOrganization,
    ConfineUser,
    DecodeError,
    FeatureSet,
    FlyAccess,
    FlyioUserID,
    FlySrc,
    FromMachineSource,
    GitHubUserID,
    GoogleUserID,
    IfPresent,
    InvalidAccessError,
    IsMember,
    IsUser,
    Macaroon,
    MachineFeatureSet,
    Machines,
    MaxValidity,
    Mutations,
    Nonce,
    Organization,
    StorageObjects,
    UnauthorizedError,
    UnregisteredCaveat,
    ValidityWindow,
    VerificationError,
    Volumes,
    decode_token,
    discharge_ticket,
    encode_token,
    parse_header,
    to_header,
)
from macaroons_authz.macaroon import _BindingIds, _Run

LOC = "https://api.example/v1"
TP = "https://auth.example"

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- strategies for the built-in caveats -------------------------------------------------

u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)
short_text = st.text(max_size=8)
small_bytes = st.binary(max_size=40)


def _caveats(actions: st.SearchStrategy[int]) -> st.SearchStrategy[Caveat]:
    """Every built-in caveat type; *actions* draws the action masks."""

    def rs(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.none() | st.dictionaries(keys, actions, max_size=3)

    commands = st.none() | st.lists(
        st.builds(Command, st.none() | st.lists(short_text, max_size=3), st.booleans()),
        max_size=3,
    )
    leaves: st.SearchStrategy[Caveat] = st.one_of(
        st.builds(Organization, u64, actions),
        st.builds(Volumes, rs(short_text)),
        st.builds(Apps, rs(u64)),
        st.builds(ValidityWindow, i64, i64),
        st.builds(FeatureSet, rs(short_text)),
        st.builds(Mutations, st.none() | st.lists(short_text, max_size=3)),
        st.builds(Machines, rs(short_text)),
        st.builds(ConfineUser, u64),
        st.builds(ConfineOrganization, u64),
        st.builds(IsUser, u64),
        st.builds(Caveat3P, short_text, st.none() | small_bytes, st.none() | small_bytes),
        st.builds(BindToParentToken, st.none() | small_bytes),
        st.builds(MachineFeatureSet, rs(short_text)),
        st.builds(FromMachineSource, short_text),
        st.builds(Clusters, rs(short_text)),
        st.builds(ConfineGoogleHD, short_text),
        st.builds(ConfineGitHubOrg, u64),
        st.builds(MaxValidity, u64),
        st.just(IsMember()),
        st.builds(FlyioUserID, u64),
        st.builds(GitHubUserID, u64),
        st.builds(GoogleUserID, st.integers(0, 2**200)),
        st.builds(ActionCaveat, actions),
        st.builds(Commands, commands),
        st.builds(AppFeatureSet, rs(short_text)),
        st.builds(StorageObjects, rs(short_text)),
        st.builds(AllowedRoles, u32),
        st.builds(FlySrc, short_text, short_text, short_text),
    )

    def wrap(children: st.SearchStrategy[Caveat]) -> st.SearchStrategy[Caveat]:
        return st.builds(IfPresent, st.none() | st.lists(children, max_size=3), actions)

    return st.recursive(leaves, wrap, max_leaves=6)


any_caveat = _caveats(st.integers(0, 0xFFFF))
#: JSON shows only the five named action bits, so only those survive JSON.
json_caveat = _caveats(st.integers(0, 0x1F))


def _token_safe(c: Caveat) -> bool:
    """Caveats a plain token can carry and still verify without discharges.

    No attestation, not even inside ``IfPresent``: only proofs carry them.
    """
    if any(x.attestation for x in CaveatSet([c]).of_type(Caveat)):
        return False
    return not isinstance(c, Caveat3P | BindToParentToken)


@given(st.lists(any_caveat, max_size=6))
@FAST
def test_msgpack_round_trip_of_random_caveat_sets(caveats: list[Caveat]) -> None:
    cs = CaveatSet(caveats)
    data = cs.encode()
    again = CaveatSet.decode(data)
    assert again == cs
    assert again.encode() == data
    assert [c.packed() for c in again] == [c.packed() for c in caveats]


@given(st.lists(json_caveat, max_size=6))
@FAST
def test_json_round_trip_of_random_caveat_sets(caveats: list[Caveat]) -> None:
    cs = CaveatSet(caveats)
    again = CaveatSet.from_json(cs.to_json())
    assert again == cs
    assert again.encode() == cs.encode()
    assert again.to_json() == cs.to_json()


@given(st.lists(any_caveat.filter(_token_safe), max_size=6))
@FAST
def test_random_caveats_survive_a_token_and_verify(caveats: list[Caveat]) -> None:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(*caveats)
    data = m.encode()
    decoded = Macaroon.decode(data)
    assert decoded.encode() == data
    assert list(decoded.verify(key)) == unique_caveats(caveats)
    header = to_header(decoded)
    (again,) = parse_header(header)
    assert again == data


@given(st.lists(any_caveat.filter(_token_safe), max_size=4), st.lists(any_caveat, max_size=4))
@FAST
def test_random_caveats_survive_a_discharge_proof(
    parent: list[Caveat], discharge: list[Caveat]
) -> None:
    key, ka = os.urandom(32), os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(*parent)
    m.add_3p(ka, TP, *[c for c in discharge if not isinstance(c, Caveat3P)][:2])
    (ticket,) = m.third_party_tickets()[TP]
    _, dm = discharge_ticket(ka, TP, ticket)
    extra = [c for c in discharge if not isinstance(c, Caveat3P | BindToParentToken)]
    dm.add(*extra)
    verified = Macaroon.decode(m.encode()).verify(key, [dm.encode()], {TP: [ka]})
    assert list(verified) == unique_caveats(parent) + unique_caveats(extra)


# -- damaged tokens ------------------------------------------------------------------------


@attrs.frozen
class _Opaque(Caveat):
    """A private caveat that no registry here knows: it decodes as unregistered."""

    a: int
    b: int

    type_number = 2**48 + 1
    name = "Opaque"

    def to_msgpack(self) -> Any:
        return {"a": self.a, "b": self.b}


def _material() -> dict[str, Any]:
    """A root token with first-party, unregistered and third-party caveats, and its discharge."""
    key, ka = os.urandom(32), os.urandom(32)
    m = Macaroon.new(b"kid-123", LOC, key)
    m.add(
        Organization(1234, Action.ALL),
        Apps({7: Action.READ, 42: Action.ALL}),
        IfPresent((Machines({"m1": Action.READ}),), Action.READ),
        ValidityWindow(1_700_000_000, 1_700_003_600),
        _Opaque(1, 2),  # forces the raw-bytes decoding path too
    )
    m.add_3p(ka, TP)
    root = m.encode()
    assert isinstance(Macaroon.decode(root).unsafe_caveats[4], UnregisteredCaveat)
    (ticket,) = m.third_party_tickets()[TP]
    _, dm = discharge_ticket(ka, TP, ticket)
    dm.add(ValidityWindow(1_700_000_000, 1_700_000_300), FlyioUserID(5678))
    dm.bind(m)
    discharge = dm.encode()
    Macaroon.decode(root).verify(key, [discharge], {TP: [ka]})
    return {"key": key, "ka": ka, "root": root, "discharge": discharge}


MATERIAL = _material()


def _signed(m: Macaroon) -> tuple[bytes, bytes, bytes]:
    """What the signature covers: the nonce, the caveats and the tail (not the location)."""
    return m.nonce.encode(), m.unsafe_caveats.encode(), m._tail


def _signed_bytes(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    try:
        return _signed(Macaroon.decode(data))
    except DecodeError:
        return None


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)


def _check_damaged_root(root: bytes) -> None:
    key, discharge, ka = MATERIAL["key"], MATERIAL["discharge"], MATERIAL["ka"]
    try:
        m = Macaroon.decode(root)
    except DecodeError:
        return
    try:
        m.verify(key, [discharge], {TP: [ka]})
    except VerificationError:
        return
    assert _signed(m) == _signed_bytes(MATERIAL["root"]), "a changed token verified"


def _check_damaged_discharge(discharge: bytes) -> None:
    key, root, ka = MATERIAL["key"], MATERIAL["root"], MATERIAL["ka"]
    m = Macaroon.decode(root)
    try:
        m.verify(key, [discharge], {TP: [ka]})
    except VerificationError:
        return
    assert _signed_bytes(discharge) == _signed_bytes(MATERIAL["discharge"]), (
        "a changed discharge verified"
    )


@given(edits)
@FUZZ
def test_damaged_root_token_never_verifies(changes: list[tuple[int, int]]) -> None:
    _check_damaged_root(_mutate(MATERIAL["root"], changes))


@given(edits)
@FUZZ
def test_damaged_discharge_never_verifies(changes: list[tuple[int, int]]) -> None:
    _check_damaged_discharge(_mutate(MATERIAL["discharge"], changes))


@given(st.integers(0, 10_000), st.integers(1, 8), st.binary(max_size=8))
@FUZZ
def test_spliced_tokens_never_verify(pos: int, cut: int, insert: bytes) -> None:
    for name, check in (("root", _check_damaged_root), ("discharge", _check_damaged_discharge)):
        data: bytes = MATERIAL[name]
        at = pos % len(data)
        check(data[:at] + insert + data[at + cut :])
        check(data[:at])


def test_every_single_bit_flip_of_the_root_is_caught() -> None:
    data = MATERIAL["root"]
    where = data.index(msgpack.packb(LOC))
    location = range(where, where + len(msgpack.packb(LOC)))
    for i in range(len(data)):
        for bit in (0x01, 0x10, 0x80):
            flipped = _mutate(data, [(i, data[i] ^ bit)])
            _check_damaged_root(flipped)
            if _signed_bytes(flipped) == _signed_bytes(data):
                # Only the location (not signed) or the wire form of a value
                # (e.g. bin8 <-> str8, as Go's decoder allows) may change.
                m = Macaroon.decode(flipped)
                assert i in location or m.encode() == data, i
                assert m.location == LOC or i in location, i


# -- decoders answer only DecodeError --------------------------------------------------------


def _only_decode_errors(fn: Callable[[Any], object], value: Any) -> None:
    with contextlib.suppress(DecodeError):
        fn(value)


hostile_bytes = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(lambda b: b"\x94" + b),
    st.binary(max_size=64).map(lambda b: b"\x94\x93" + b),
    st.binary(max_size=64).map(lambda b: MATERIAL["root"][:40] + b),
    st.builds(_mutate, st.sampled_from([MATERIAL["root"], MATERIAL["discharge"]]), edits),
)


@given(hostile_bytes)
@FUZZ
def test_macaroon_decode_raises_only_decode_error(data: bytes) -> None:
    _only_decode_errors(Macaroon.decode, data)


@given(
    st.one_of(
        st.binary(max_size=64),
        st.binary(max_size=64).map(lambda b: b"\x92" + b),
        st.builds(_mutate, st.just(CaveatSet([IfPresent((Apps({1: 1}),), 1)]).encode()), edits),
        st.lists(any_caveat, max_size=3).map(lambda cs: CaveatSet(cs).encode()[:-1]),
    )
)
@FUZZ
def test_caveat_set_decode_raises_only_decode_error(data: bytes) -> None:
    _only_decode_errors(CaveatSet.decode, data)


@given(
    st.one_of(
        st.binary(max_size=40),
        st.binary(max_size=40).map(lambda b: b"\x93" + b),
        st.builds(_mutate, st.just(Nonce(b"kid", bytes(16), True).encode()), edits),
    )
)
@FUZZ
def test_nonce_decode_raises_only_decode_error(data: bytes) -> None:
    _only_decode_errors(Nonce.decode, data)
    _only_decode_errors(Nonce.from_json, data.decode("latin-1"))


token_text = st.one_of(
    st.text(max_size=40),
    st.text(max_size=40).map(lambda s: "fm2_" + s),
    st.builds(
        lambda s, i, c: s[: i % len(s)] + c + s[i % len(s) + 1 :],
        st.just(encode_token(MATERIAL["root"])),
        st.integers(0, 1000),
        st.characters(),
    ),
)


@given(token_text)
@FUZZ
def test_decode_token_and_parse_header_raise_only_decode_error(text: str) -> None:
    _only_decode_errors(decode_token, text)
    _only_decode_errors(parse_header, text)
    _only_decode_errors(parse_header, "FlyV1 " + text + "," + text)


# -- hand-made hostile input -------------------------------------------------------------------


def _token(nonce: bytes, location: bytes, caveats: bytes, tail: bytes) -> bytes:
    return b"\x94" + nonce + location + caveats + tail


NONCE = msgpack.packb([b"kid", bytes(16), False])
LOCATION = msgpack.packb(LOC)
TAIL = msgpack.packb(bytes(32), use_bin_type=True)


@pytest.mark.parametrize(
    "data",
    [
        b"\xdd\xff\xff\xff\xff",
        b"\xdc\xff\xff",
        b"\xc6\xff\xff\xff\xff",
        b"\xdb\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
        b"\xc9\xff\xff\xff\xff\x01",
        b"\x94\xdd\xff\xff\xff\xff",
        _token(NONCE, LOCATION, b"\xdd\xff\xff\xff\xff", TAIL),
        _token(NONCE, LOCATION, b"\x90", b"\xc6\xff\xff\xff\xff"),
        _token(NONCE, b"\xdb\xff\xff\xff\xff", b"\x90", TAIL),
        _token(b"\x93\xc6\xff\xff\xff\xff", LOCATION, b"\x90", TAIL),
        _token(NONCE, LOCATION, b"\x92\xcf" + bytes(8) + b"\xc6\xff\xff\xff\xff", TAIL),
    ],
    ids=lambda d: d[:12].hex(),
)
def test_huge_declared_lengths_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError, match="malformed MessagePack"):
        Macaroon.decode(data)
    with pytest.raises(DecodeError):
        CaveatSet.decode(data)
    with pytest.raises(DecodeError):
        Nonce.decode(data)


def test_deep_msgpack_nesting_is_a_decode_error() -> None:
    for opener in (b"\x91", b"\x81\x00", b"\xdc\x00\x01"):
        bomb = opener * 30_000 + b"\xc0"
        with pytest.raises(DecodeError, match="malformed MessagePack"):
            Macaroon.decode(b"\x94" + bomb)
        with pytest.raises(DecodeError, match="malformed MessagePack"):
            CaveatSet.decode(bomb)
    # Inside an unregistered caveat, the raw-bytes path has its own limit.
    deep = b"\x91" * 100 + b"\x00"
    unknown = msgpack.packb(2**48) + deep
    with pytest.raises(DecodeError, match="malformed MessagePack: nested too deeply"):
        CaveatSet.decode(b"\x92" + unknown)
    shallow = msgpack.packb(2**48) + b"\x91" * 60 + b"\x00"
    assert CaveatSet.decode(b"\x92" + shallow).encode() == b"\x92" + shallow


def _nested_if_present(levels: int, innermost: Caveat) -> IfPresent:
    cav: Caveat = innermost
    for _ in range(levels):
        cav = IfPresent((cav,), Action.READ)
    assert isinstance(cav, IfPresent)
    return cav


@pytest.mark.parametrize(
    "innermost",
    [ActionCaveat(Action.READ), UnregisteredCaveat(2**48, b"\x01")],
    ids=["known", "unregistered"],
)
def test_if_present_nesting_is_limited(innermost: Caveat) -> None:
    ok = CaveatSet([_nested_if_present(MAX_NESTING, innermost)])
    assert CaveatSet.decode(ok.encode()) == ok
    bomb = CaveatSet([_nested_if_present(MAX_NESTING + 1, innermost)]).encode()
    with pytest.raises(DecodeError, match="nested too deeply"):
        CaveatSet.decode(bomb)
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    # add() refuses what decode would refuse (issue 16)...
    with pytest.raises(AttenuationError, match="nested too deeply"):
        m.add(_nested_if_present(MAX_NESTING + 1, innermost))
    # ...and a token written without add() is refused by decode.
    forged = Macaroon(
        m.nonce, LOC, [_nested_if_present(MAX_NESTING + 1, innermost)], m._tail, finalized=True
    )
    with pytest.raises(DecodeError, match="nested too deeply"):
        Macaroon.decode(forged.encode())
    # Far deeper, written by hand: no Python object that deep is ever built.
    levels = 20_000
    huge = b"\x92\x0d\x92" * levels + b"\x92\x1a\x01" + b"\x01" * levels
    with pytest.raises(DecodeError):
        CaveatSet.decode(huge)
    with pytest.raises(DecodeError):
        Macaroon.decode(_token(NONCE, LOCATION, huge, TAIL))


def test_if_present_nesting_is_limited_in_json() -> None:
    ok = CaveatSet([_nested_if_present(MAX_NESTING, ActionCaveat(1))])
    assert CaveatSet.from_json(ok.to_json()) == ok
    bomb = CaveatSet([_nested_if_present(MAX_NESTING + 1, ActionCaveat(1))]).to_json()
    with pytest.raises(DecodeError, match="nested too deeply"):
        CaveatSet.from_json(bomb)


def test_caveat_count_is_limited() -> None:
    member = IsMember().packed()[1:]
    ok = b"\xdc" + (2 * MAX_CAVEATS).to_bytes(2, "big") + member * MAX_CAVEATS
    assert len(CaveatSet.decode(ok)) == MAX_CAVEATS
    over = b"\xdc" + (2 * MAX_CAVEATS + 2).to_bytes(2, "big") + member * (MAX_CAVEATS + 1)
    # Refused from the array's header, before its elements are built.
    with pytest.raises(DecodeError, match=f"more than {2 * MAX_CAVEATS} elements"):
        CaveatSet.decode(over)


@pytest.mark.parametrize(
    "caveats",
    [
        b"\x91\x04",
        b"\x93\x04\x92\x00\x00\x04",
        b"\x93\x16\x90\xcf" + bytes(8),
        b"\x95" + b"\x16" * 5,
    ],
)
def test_odd_caveat_set_length_is_a_bad_caveat_container(caveats: bytes) -> None:
    with pytest.raises(DecodeError, match="bad caveat container"):
        CaveatSet.decode(caveats)
    with pytest.raises(DecodeError, match="bad caveat container"):
        Macaroon.decode(_token(NONCE, LOCATION, caveats, TAIL))


def test_odd_caveat_set_length_inside_if_present() -> None:
    bad = b"\x92\x0d\x92\x91\x04\x01"
    with pytest.raises(DecodeError, match="bad caveat container"):
        CaveatSet.decode(bad)


@pytest.mark.parametrize("count", [0, 1, 4, 5, 15])
def test_wrong_nonce_element_count_is_an_unknown_nonce_format(count: int) -> None:
    nonce = msgpack.packb([b"kid", bytes(16), False, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][:count])
    with pytest.raises(DecodeError, match=f"unknown nonce format: {count} fields"):
        Nonce.decode(nonce)
    with pytest.raises(DecodeError, match=f"unknown nonce format: {count} fields"):
        Macaroon.decode(_token(nonce, LOCATION, b"\x90", TAIL))


def test_nonce_fields_of_the_wrong_type_are_decode_errors() -> None:
    for nonce in ([1, b"r", False], [b"k", 1, False], [b"k", b"r", 1], [b"k", b"r", None]):
        with pytest.raises(DecodeError, match="nonce"):
            Nonce.decode(msgpack.packb(nonce))
    with pytest.raises(DecodeError, match="nonce must be an array"):
        Nonce.decode(b"\x80")


@pytest.mark.parametrize("tail", [b"", bytes(31), bytes(33), None, "x" * 31, 7])
def test_tail_must_be_32_bytes(tail: object) -> None:
    data = _token(NONCE, LOCATION, b"\x90", msgpack.packb(tail, use_bin_type=True))
    with pytest.raises(DecodeError, match="tail"):
        Macaroon.decode(data)


def test_empty_and_non_token_input() -> None:
    with pytest.raises(DecodeError, match="empty token"):
        Macaroon.decode(b"")
    for data in (
        b"\x93" + NONCE + LOCATION + b"\x90",
        b"\x95" + NONCE + LOCATION + b"\x90\x00\x00",
    ):
        with pytest.raises(DecodeError, match="4 fields"):
            Macaroon.decode(data)
    for data in (b"\xc0", b"\x80", b"\x00", b"\xa3abc"):
        with pytest.raises(DecodeError):
            Macaroon.decode(data)
    with pytest.raises(DecodeError, match="caveat set must be an array"):
        Macaroon.decode(_token(NONCE, LOCATION, b"\xc0", TAIL))
    with pytest.raises(TypeError):
        Macaroon.decode(bytearray(b"\x94"))  # type: ignore[arg-type]


def test_trailing_garbage_after_a_valid_token_is_ignored() -> None:
    root, key = MATERIAL["root"], MATERIAL["key"]
    for garbage in (b"\x00", b"\xc1", b"\xff" * 100, root):
        m = Macaroon.decode(root + garbage)
        assert m.encode() == root
        m.verify(key, [MATERIAL["discharge"]])
        header = "FlyV1 fm2_" + base64.b64encode(root + garbage).decode()
        assert Macaroon.decode(parse_header(header)[0]).encode() == root
    # Trailing bytes after a discharge are ignored too.
    Macaroon.decode(root).verify(key, [MATERIAL["discharge"] + b"\xc1\xc1"])


def _str8(data: bytes) -> bytes:
    return b"\xd9" + bytes([len(data)]) + data


def test_str_where_bin_is_expected_is_accepted_as_in_go() -> None:
    key = os.urandom(32)
    kid, rnd = b"kid", bytes(range(16))
    packed = [
        b"\x92\x0c" + _str8(b"\xde\xad"),  # BindToParentToken
        b"\x92\x19" + _str8(b"\x01\x02"),  # GoogleUserID
    ]
    canonical_nonce = msgpack.packb([kid, rnd, True], use_bin_type=True)
    cur = hmac.digest(key, canonical_nonce, "sha256")
    for p in (BindToParentToken(b"\xde\xad").packed(), GoogleUserID(0x0102).packed()):
        cur = hmac.digest(cur, p, "sha256")
    tail = hmac.digest(b"proof-signature-finalization", cur, "sha256")
    nonce = b"\x93" + _str8(kid) + _str8(rnd) + b"\xc3"
    caveats = b"\x94" + b"".join(p[1:] for p in packed)
    data = _token(nonce, msgpack.packb(LOC.encode()), caveats, _str8(tail))
    m = Macaroon.decode(data)
    assert m.nonce == Nonce(kid, rnd, True)
    assert m.location == LOC
    assert list(m.unsafe_caveats) == [BindToParentToken(b"\xde\xad"), GoogleUserID(0x0102)]
    assert m.encode() != data and Macaroon.decode(m.encode()).encode() == m.encode()
    m._verify_discharge(key, _BindingIds([bytes.fromhex("deadbeef")]), True, _Run())


def test_non_canonical_ints_are_re_encoded_before_the_mac() -> None:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(Organization(1234, Action.ALL))
    data = m.encode()
    canonical = Organization(1234, Action.ALL).packed()[1:]
    wide = b"\x00\x92\xcf" + (1234).to_bytes(8, "big") + b"\xd0\x1f"
    assert data.count(canonical) == 1
    widened = data.replace(canonical, wide)
    assert widened != data
    decoded = Macaroon.decode(widened)
    assert decoded.encode() == data
    assert list(decoded.verify(key)) == [Organization(1234, Action.ALL)]


@pytest.mark.parametrize(
    "packed",
    [
        b"\x92\x00\x92\xc3\x01",  # Organization id
        b"\x92\x00\x92\x01\xc2",  # Organization mask
        b"\x92\x04\x92\xc3\x00",  # ValidityWindow
        b"\x92\x1a\xc3",  # Action
        b"\x92\x03\x91\x81\xc3\x01",  # Apps key
        b"\x92\x03\x91\x81\x01\xc3",  # Apps action
        b"\x92\x17\xc2",  # FlyioUserID
        b"\x92\x1e\xc3",  # AllowedRoles
        b"\x92\x0d\x92\x90\xc3",  # IfPresent else
        b"\x92\xc3\x01",  # the caveat type itself
        b"\x92\x1b\x91\x92\x90\x01",  # Commands exact given as an int
        b"\x92\x04\x92\xca\x00\x00\x00\x00\x00",  # a float for an int
        b"\x92\x00\x92\xff\x01",  # a negative id
        b"\x92\x04\x92\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x00",  # int64 overflow
        b"\x92\x1a\xce\x00\x01\x00\x00",  # an action over 16 bits
        b"\x92\x1e\xcf\x00\x00\x00\x01\x00\x00\x00\x00",  # roles over 32 bits
        b"\x92\x00\x92\xd6\xff\x00\x00\x00\x01\x01",  # a timestamp extension
        b"\x92\x00\x93\x01\x01\x01",  # a struct with a field too many
    ],
    ids=lambda p: p.hex(),
)
def test_values_of_the_wrong_type_are_rejected(packed: bytes) -> None:
    with pytest.raises(DecodeError):
        CaveatSet.decode(packed)
    with pytest.raises(DecodeError):
        Macaroon.decode(_token(NONCE, LOCATION, packed, TAIL))


def test_token_size_limit() -> None:
    root = MATERIAL["root"]
    exact = root + bytes(MAX_TOKEN_SIZE - len(root))
    assert Macaroon.decode(exact).encode() == root
    with pytest.raises(DecodeError, match=f"larger than {MAX_TOKEN_SIZE}"):
        Macaroon.decode(exact + b"\x00")


def test_malformed_discharges_are_skipped_not_fatal() -> None:
    root, key, discharge = MATERIAL["root"], MATERIAL["key"], MATERIAL["discharge"]
    junk = [b"", b"\x94", b"\xc1", b"\xdd\xff\xff\xff\xff", discharge[:-1]]
    Macaroon.decode(root).verify(key, [*junk, discharge])
    with pytest.raises(VerificationError, match="no matching discharge token"):
        Macaroon.decode(root).verify(key, junk)


@given(st.binary(min_size=1, max_size=40))
@settings(max_examples=40, deadline=None)
def test_random_bytes_as_a_discharge_are_skipped(junk: bytes) -> None:
    root, key, discharge = MATERIAL["root"], MATERIAL["key"], MATERIAL["discharge"]
    assume(junk != discharge[: len(junk)])
    Macaroon.decode(root).verify(key, [junk, discharge])


# -- hostile JSON and huge numbers: only the library's errors escape (issue 15, item 6) ----------

#: Values Go's decoder refuses or reads differently, and the review's bombs.
HOSTILE_JSON = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1",
    "1.5",
    "18446744073709551616",
    "9" * 5000,
    '"' + "9" * 5000 + '"',
    '"\\ud800"',
    '"\\udc80x"',
    '"\\udfff\\ud800"',
    '"read"',
    '"write"',
    '"r*"',
    '"*"',
    "[" * 3000,
    "[" * 200 + "]" * 200,
    '{"a":' * 150 + "1" + "}" * 150,
    "null",
    "true",
    "{}",
    "[]",
]
_JSON_SCALAR = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|null|true|false')


def _value_spots(template: str) -> list[re.Match[str]]:
    """The JSON scalars of *template* that are values (not object keys)."""
    return [
        m
        for m in _JSON_SCALAR.finditer(template)
        if not template[m.end() :].lstrip().startswith(":")
    ]


def _spliced(template: str, at: int, fragment: str) -> str:
    """*template* with its value number *at* (modulo their count) replaced by *fragment*."""
    spots = _value_spots(template)
    if not spots:
        return fragment
    spot = spots[at % len(spots)]
    return template[: spot.start()] + fragment + template[spot.end() :]


def _with_bad_bytes(text: str, at: int, junk: bytes) -> bytes:
    """*text* with bytes that are not UTF-8 inside one of its string values."""
    junk = bytes(b | 0x80 for b in junk)
    spots = [m for m in _value_spots(text) if m.group().startswith('"')]
    if not spots:
        return text.encode() + junk
    where = spots[at % len(spots)].start() + 1
    return text[:where].encode() + junk + text[where:].encode()


def _hostile_text(templates: st.SearchStrategy[str]) -> st.SearchStrategy[str | bytes]:
    fragment = st.sampled_from(HOSTILE_JSON) | st.text(max_size=6).map(
        lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'
    )
    spliced = st.builds(_spliced, templates, st.integers(0, 200), fragment)
    return st.one_of(
        spliced,
        st.builds(_spliced, spliced, st.integers(0, 200), fragment),
        st.builds(_with_bad_bytes, spliced, st.integers(0, 400), st.binary(min_size=1, max_size=3)),
        fragment,
    )


_caveat_templates = st.lists(json_caveat, min_size=1, max_size=4).map(
    lambda cs: CaveatSet(cs).to_json()
)
_ACCESS_TEMPLATE = (
    '{"action":"rw","orgid":1,"appid":2,"machine":"m","machine_feature":"f",'
    '"command":["ls","-l"],"sourceMachine":"s"}'
)


def _json_is_writable(text: str) -> None:
    text.encode("utf-8")  # no lone surrogates


@given(_hostile_text(_caveat_templates))
@FUZZ
def test_caveat_json_raises_only_decode_errors_and_what_it_reads_is_usable(
    text: str | bytes,
) -> None:
    try:
        cs = CaveatSet.from_json(text)
    except DecodeError:
        return
    repr(cs)
    _json_is_writable(cs.to_json())
    try:
        data = cs.encode()
    except DecodeError:  # an unregistered caveat read from JSON has no MessagePack form
        assert any(isinstance(c, UnregisteredCaveat) for c in cs.of_type(Caveat))
        return
    assert CaveatSet.decode(data).encode() == data
    with contextlib.suppress(UnauthorizedError):
        cs.validate(FlyAccess(org_id=1, app_id=2, machine="m", action=Action.READ, at=0))


@given(
    _hostile_text(st.just(_ACCESS_TEMPLATE)),
    st.sampled_from([0, 1.5, 2**70, math.nan, math.inf, -math.inf]),
)
@FUZZ
def test_access_json_raises_only_decode_errors_and_what_it_reads_is_usable(
    text: str | bytes, now: float
) -> None:
    try:
        access = FlyAccess.from_json(text, now=now)
    except DecodeError:
        return
    except InvalidAccessError:
        assert not math.isfinite(now)  # a time that is not finite makes no access
        return
    assert math.isfinite(now)
    repr(access)
    _json_is_writable(access.to_json())
    with contextlib.suppress(UnauthorizedError):
        access.validate()
        CaveatSet([Organization(1, Action.READ), ValidityWindow(0, 10)]).validate(access)


@given(
    st.one_of(
        st.sampled_from(HOSTILE_JSON),
        st.builds(
            _spliced,
            st.just(Nonce(b"k", bytes(16), True).to_json()),
            st.just(0),
            st.sampled_from(HOSTILE_JSON),
        ),
    ),
    st.booleans(),
)
@FUZZ
def test_nonce_json_raises_only_decode_errors(text: str, as_bytes: bool) -> None:
    _only_decode_errors(Nonce.from_json, text.encode() if as_bytes else text)


@given(st.integers(0, 3000), st.integers(0, 255))
@FUZZ
def test_google_user_ids_of_any_size_decode_or_raise_decode_error(size: int, first: int) -> None:
    body = bytes([first]) + bytes(size)
    data = b"\x92\x19" + msgpack.packb(body, use_bin_type=True)
    try:
        cs = CaveatSet.decode(data)
    except DecodeError:
        assert int.from_bytes(body, "big") >= 10**255
        return
    repr(cs)
    _json_is_writable(cs.to_json())
    assert CaveatSet.from_json(cs.to_json()) == cs
