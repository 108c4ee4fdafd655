"""The decoding fast path agrees with the general path, byte for byte (issue 18).

The fast path builds a caveat whose body is already canonical with its
class's ``from_canonical`` and MACs the body's plain re-encoding; the
general path builds every caveat with ``from_msgpack`` and MACs
``packed()``. A registry whose ``fast_builders`` is empty decodes by the
general path only, so the two are compared on the same bytes: generated
tokens, the same tokens written non-canonically (wide integers, long
string headers, binary strings, unsorted maps, ...) and randomly mutated
ones. They must give the same caveats, MAC inputs, encodings,
verification results and errors.
"""

from __future__ import annotations

from typing import Any

import attrs
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macaroons_authz import (
    DEFAULT_REGISTRY,
    Action,
    ActionCaveat,
    AppFeatureSet,
    Apps,
    AttenuationError,
    BindToParentToken,
    Caveat,
    Caveat3P,
    Clusters,
    ConfineOrganization,
    ConfineUser,
    DecodeError,
    FeatureSet,
    IfPresent,
    Macaroon,
    MachineFeatureSet,
    Machines,
    Mutations,
    Organization,
    ResourceSet,
    StorageObjects,
    ValidityWindow,
    VerificationError,
    Volumes,
    _decode,
    _msgpack,
    discharge_ticket,
    new_encryption_key,
)
from macaroons_authz.caveats.resset import Prefix

KEY = bytes(range(32))

u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
mask = st.integers(0, 0xFFFF)
# Small ids, zero (the wildcard) and empty strings included; non-ASCII too.
int_ids = st.one_of(st.integers(0, 300), u64)
str_ids = st.text(max_size=4)
int_sets = st.none() | st.dictionaries(int_ids, mask, max_size=4)
str_sets = st.none() | st.dictionaries(str_ids, mask, max_size=4)

leaves = st.one_of(
    st.builds(Organization, u64, mask),
    st.builds(Apps, int_sets),
    st.builds(Machines, str_sets),
    st.builds(FeatureSet, str_sets),
    st.builds(Volumes, str_sets),
    st.builds(Clusters, str_sets),
    st.builds(AppFeatureSet, str_sets),
    st.builds(MachineFeatureSet, str_sets),
    st.builds(StorageObjects, st.dictionaries(str_ids.map(Prefix), mask, max_size=3)),
    st.builds(ValidityWindow, i64, i64),
    st.builds(ActionCaveat, mask),
    st.builds(ConfineOrganization, u64),
    st.builds(ConfineUser, u64),
    st.builds(Mutations, st.none() | st.lists(st.text(max_size=4), max_size=2)),
    st.builds(BindToParentToken, st.none() | st.binary(max_size=16)),
    st.builds(
        Caveat3P,
        st.text(max_size=8),
        st.none() | st.binary(max_size=8),
        st.none() | st.binary(max_size=8),
    ),
)
caveats = st.recursive(
    leaves,
    lambda inner: st.builds(IfPresent, st.none() | st.lists(inner, max_size=3), mask),
    max_leaves=6,
)


def _mint(cavs: list[Caveat]) -> bytes:
    token = Macaroon.new(b"kid", "https://api.example", KEY)
    for cav in cavs:
        try:
            token.add(cav)
        except AttenuationError:  # a second 3P caveat for one location, ...
            continue
    return token.encode()


def _general_registry() -> Any:
    registry = DEFAULT_REGISTRY.copy()
    registry.fast_builders = {}
    return registry


GENERAL = _general_registry()


def _shape(cav: Caveat) -> Any:
    """What two decodings must share: the caveat, its repr and its resource index."""
    rs = getattr(cav, "resources", None)
    inner = [_shape(c) for c in cav.ifs or ()] if type(cav) is IfPresent else None
    return cav, repr(cav), getattr(rs, "_index", None), inner


def _outcome(data: bytes, registry: Any) -> Any:
    try:
        token = Macaroon.decode(data, registry)
    except DecodeError as exc:
        return "decode", type(exc), str(exc)
    # The nonce's first MAC input is its canonical encoding, however it was read.
    assert token._nonce_packed == token.nonce.encode()
    try:
        verified: Any = [_shape(c) for c in token.verify(KEY)]
    except VerificationError as exc:
        verified = type(exc), str(exc)
    return (
        token.nonce,
        token.location,
        [_shape(c) for c in token.unsafe_caveats],
        token._packs(),
        token.encode(),
        verified,
    )


def _agree(data: bytes) -> Any:
    """Decode *data* by every path; assert they agree; return the outcome."""
    GENERAL.memo.clear()
    general = _outcome(data, GENERAL)
    DEFAULT_REGISTRY.memo.clear()
    first = _outcome(data, DEFAULT_REGISTRY)  # the fast path: caveats seen for the first time
    second = _outcome(data, DEFAULT_REGISTRY)  # seen again: now remembered
    again = _outcome(data, DEFAULT_REGISTRY)  # from the memo (by slicing, when canonical)
    assert first == general
    assert second == general
    assert again == general
    return general


def _loose(value: Any, draw: Any) -> bytes:
    """*value* MessagePack-encoded with forms Go's encoder never writes, drawn at random."""
    choice = draw(st.integers(0, 3))
    if value is None or type(value) is bool:
        return msgpack.packb(value)
    if type(value) is int:
        if value >= 0 and choice:
            width = [(0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)][choice]
            if value < 256 ** width[1]:
                return bytes((width[0],)) + value.to_bytes(width[1], "big")
        if -(2**63) <= value < 2**63 and choice == 1:
            return b"\xd3" + value.to_bytes(8, "big", signed=True)
        return msgpack.packb(value)
    if type(value) is str:
        raw = value.encode("utf-8", "surrogateescape")
        if choice == 1 and len(raw) < 256:
            return b"\xd9" + bytes((len(raw),)) + raw  # str8 for a short string
        if choice == 2 and len(raw) < 256:
            return b"\xc4" + bytes((len(raw),)) + raw  # a string written as bin
        return _msgpack.pack(value)
    if type(value) is bytes:
        if choice == 1 and len(value) < 32:
            return bytes((0xA0 | len(value),)) + value  # bin written as a string
        if choice == 2:
            return b"\xc5" + len(value).to_bytes(2, "big") + value
        return msgpack.packb(value)
    if type(value) is list:
        head = b"\xdc" + len(value).to_bytes(2, "big") if choice == 1 else _array(len(value))
        return head + b"".join(_loose(v, draw) for v in value)
    assert type(value) is dict
    items = list(value.items())
    if choice == 1:
        items.reverse()
    head = b"\xde" + len(items).to_bytes(2, "big") if choice == 2 else _map(len(items))
    return head + b"".join(_loose(k, draw) + _loose(v, draw) for k, v in items)


def _array(n: int) -> bytes:
    return _msgpack.array_header(n)


def _map(n: int) -> bytes:
    return bytes((0x80 | n,)) if n < 16 else b"\xde" + n.to_bytes(2, "big")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(caveats, max_size=6))
def test_generated_tokens_decode_alike(cavs: list[Caveat]) -> None:
    data = _mint(cavs)
    outcome = _agree(data)
    assert outcome[4] == data  # and a canonical token re-encodes to itself


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(caveats, min_size=1, max_size=5), st.data())
def test_non_canonical_writings_decode_alike(cavs: list[Caveat], data: st.DataObject) -> None:
    token = _mint(cavs)
    nonce, location, items, tail = _msgpack.unpack(token)
    loose_set = _loose(items, data.draw)
    written = b"\x94" + _msgpack.pack(nonce) + _msgpack.pack(location) + loose_set
    written += _msgpack.pack(tail)
    outcome = _agree(written)
    if outcome[0] != "decode":
        # However it was written, a caveat MACs in its canonical form.
        assert outcome[4] == Macaroon.decode(token).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(caveats, min_size=1, max_size=4), st.data())
def test_mutated_tokens_decode_alike(cavs: list[Caveat], data: st.DataObject) -> None:
    token = bytearray(_mint(cavs))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(token) - 1))
        kind = data.draw(st.integers(0, 2))
        if kind == 0:
            token[at] = data.draw(st.integers(0, 255))
        elif kind == 1:
            del token[at]
        else:
            token.insert(at, data.draw(st.integers(0, 255)))
    if token:
        _agree(bytes(token))


def test_canonical_bodies_of_every_fast_type_take_the_fast_path() -> None:
    # Not remembered alone: only caveats decoded by the general path are.
    cavs: list[Caveat] = [
        Organization(1, 3),
        Apps({0: 1}),
        Apps({5: 1, 700: 3}),
        Apps(None),
        Machines({"a": 1, "b": 2}),
        FeatureSet({}),
        Volumes({"v": 1}),
        Clusters({"c": 1}),
        AppFeatureSet({"i": 1}),
        MachineFeatureSet({"m": 1}),
        ValidityWindow(-5, 2**63 - 1),
        ActionCaveat(3),
        ConfineOrganization(9),
        ConfineUser(8),
        BindToParentToken(b"x" * 16),
        BindToParentToken(None),
        Caveat3P("https://tp", b"vk", b"ticket"),
        IfPresent((Machines({"m": 1}), IfPresent(None, 1)), 1),
    ]
    data = _mint(cavs)
    DEFAULT_REGISTRY.memo.clear()
    decoded = Macaroon.decode(data)
    assert list(decoded.unsafe_caveats) == cavs
    assert len(DEFAULT_REGISTRY.memo) == 1  # the token's set, nothing alone
    assert _agree(data)[4] == data


def test_a_set_is_remembered_from_its_second_sighting() -> None:
    # The first sighting leaves the key alone, holding no caveat: unique
    # tokens keep nothing alive for the garbage collector to walk.
    data = _mint([Organization(1, 31), Apps({7: 1}), Mutations(["deleteApp"])])
    memo = DEFAULT_REGISTRY.memo
    memo.clear()
    first = Macaroon.decode(data)
    assert [entry[:2] for entry in memo.values()] == [((), ())] * 2  # Mutations alone; the set
    assert _decode.decode_known(Macaroon, data, memo) is None
    second = Macaroon.decode(data)
    known = _decode.decode_known(Macaroon, data, memo)
    assert known is not None
    assert known.unsafe_caveats == second.unsafe_caveats == first.unsafe_caveats
    assert known._packs() == first._packs()
    assert [len(entry[0]) for entry in memo.values()] == [1, 3]


@pytest.mark.parametrize(
    ("number", "body"),
    [
        (0, [1, 0x10000]),  # mask beyond 16 bits
        (0, [-1, 3]),
        (0, [True, 3]),
        (0, None),  # Go's zero value: decodes, but re-encodes as [0, 0]
        (3, [{2: 1, 1: 1}]),  # unsorted
        (3, [{"1": 1}]),  # a string id where ints are expected
        (3, [{1: 1.0}]),
        (7, [{"é": 1}]),  # not ASCII: the general path sorts by bytes
        (7, [{b"m": 1}]),  # a binary id
        (4, [2**63, 0]),
        (4, [0, 2**63]),
        (4, [1]),
        (11, [b"loc", None, None]),  # a binary location
        (12, "id"),  # a string binding id
        (13, [[0, [1, 2]], 2**16]),
        (13, [[0, [1, 2], 1], 1]),  # an odd caveat set inside
        (13, [[99, 1], 1]),  # an unregistered caveat inside
        (26, 2**16),
        (9, []),
    ],
)
def test_bodies_that_are_not_canonical_go_to_the_general_path(number: int, body: Any) -> None:
    build = DEFAULT_REGISTRY.fast_builders[number]
    assert build(body, DEFAULT_REGISTRY.fast_builders, 0) is None
    data = b"\x94" + _msgpack.pack([b"kid", b"r" * 16, False]) + _msgpack.pack("loc")
    data += _msgpack.pack([number, body]) + _msgpack.pack(b"t" * 32)
    _agree(data)


def test_nesting_past_the_limit_is_refused_by_both_paths() -> None:
    body: Any = [[0, [1, 1]], 1]
    for _ in range(20):
        body = [[13, body], 1]
    data = b"\x94" + _msgpack.pack([b"kid", b"r" * 16, False]) + _msgpack.pack("loc")
    data += _msgpack.pack([13, body]) + _msgpack.pack(b"t" * 32)
    assert _agree(data) == ("decode", DecodeError, "caveats nested too deeply")


def test_a_subclass_that_changes_the_coding_keeps_the_general_path() -> None:
    import attrs

    @attrs.frozen
    class Wide(Organization):
        type_number = 2**48 + 5
        name = "Wide"
        aliases = ()

        def to_msgpack(self) -> Any:
            return [self.id, self.mask, 0]

    @attrs.frozen
    class Same(Organization):
        type_number = 2**48 + 6
        name = "Same"
        aliases = ()

    registry = DEFAULT_REGISTRY.copy()
    registry.register(Wide)
    registry.register(Same)
    assert Wide.type_number not in registry.fast_builders
    assert registry.fast_builders[Same.type_number] == Same.from_canonical


def test_third_party_tickets_reads_only_the_discharges_nonce() -> None:
    # As Go's DecodeNonce: a discharge whose nonce is readable counts as
    # present, whatever follows it; one whose nonce is not does not.
    tp_key = new_encryption_key()
    root = Macaroon.new(b"kid", "loc", KEY)
    root.add_3p(tp_key, "https://tp", ConfineOrganization(1))
    (ticket,) = root.third_party_tickets()["https://tp"]
    _, discharge = discharge_ticket(tp_key, "https://tp", ticket)
    data = discharge.encode()
    nonce_end = 1 + len(discharge.nonce.encode())
    broken_tail = data[:-1]
    assert root.third_party_tickets(broken_tail) == {}
    assert root.third_party_tickets(b"\x91" + data[1:nonce_end]) == {}
    for not_a_nonce in (b"", b"\x90", b"\x94\xc1", b"\xc4\x01x", data[: nonce_end - 1]):
        assert root.third_party_tickets(not_a_nonce) == {"https://tp": [ticket]}


resource_caveats = st.one_of(
    st.builds(Apps, int_sets),
    st.builds(Machines, str_sets),
    st.builds(FeatureSet, str_sets),
    st.builds(StorageObjects, st.dictionaries(str_ids.map(Prefix), mask, max_size=3)),
)


class _Access:
    """An access holding exactly the given attributes."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


@settings(max_examples=400, deadline=None)
@given(resource_caveats, st.data())
def test_resource_caveats_allow_exactly_what_a_scan_of_their_set_allows(
    cav: Any, data: st.DataObject
) -> None:
    # A resource-set caveat answers an allowed access with one index
    # look-up; every answer must be the one a scan of the set gives.
    rs = cav.resources or ResourceSet(())
    keys = [k for k, _ in rs.entries]
    resource = data.draw(
        st.one_of(st.sampled_from(keys or [None]), st.none(), int_ids, str_ids, st.just(True))
    )
    action = data.draw(mask | st.sampled_from(list(Action)))
    scan = attrs.evolve(rs)
    object.__setattr__(scan, "_index", None)
    expected = scan.prohibits(resource, action, cav._kind, cav)
    got = cav.prohibits(_Access(**{cav._access_attr: resource, "action": action}))
    assert (type(got), str(got)) == (type(expected), str(expected))
