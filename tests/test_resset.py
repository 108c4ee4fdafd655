"""Actions, resource sets and IfPresent (spec 9.2-9.4; Go's resset tests)."""

from __future__ import annotations

import json
import re
from functools import reduce
from typing import Any

import pytest
from authz_helpers import (
    ALL,
    NONE,
    T0,
    C,
    D,
    ForAct,
    ForRes,
    R,
    Unspec,
    W,
    X,
    assert_denied,
    assert_prohibits,
    fly,
    validate_outcome,
)
from hypothesis import example, given
from hypothesis import strategies as st

from macaroons_authz import (
    Action,
    ActionCaveat,
    Apps,
    BadCaveatError,
    CaveatSet,
    DecodeError,
    DischargeRequest,
    FeatureSet,
    FlySrc,
    IfPresent,
    InvalidAccessError,
    Machines,
    Organization,
    Prefix,
    ResourceSet,
    StorageObjects,
    UnauthorizedError,
    ValidityWindow,
    Volumes,
)

# -- Action ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("letters", "mask"),
    [
        ("", 0),
        ("r", 0x01),
        ("w", 0x02),
        ("c", 0x04),
        ("d", 0x08),
        ("C", 0x10),
        ("rwcdC", 0x1F),
        ("Cdcwr", 0x1F),
        ("rr", 0x01),
        ("*", 0xFFFF),
    ],
)
def test_action_from_letters(letters: str, mask: int) -> None:
    assert Action.from_letters(letters) == mask


@pytest.mark.parametrize(
    ("letters", "bad"),
    [
        # Go ignores unknown letters: "read" would be rd, "write" rw.
        ("read", "e"),
        ("write", "i"),
        ("x", "x"),
        ("rx", "x"),
        ("R", "R"),
        ("D", "D"),
        # Only a lone "*" is every bit.
        ("r*", "*"),
        ("**", "*"),
        (" * ", " "),
        ("r\udc80", "\udc80"),
    ],
)
def test_unknown_action_letters_are_refused(letters: str, bad: str) -> None:
    with pytest.raises(DecodeError, match=f"unknown action letter {re.escape(repr(bad))}.*rwcdC"):
        Action.from_letters(letters)


@pytest.mark.parametrize(
    ("mask", "letters"),
    [
        (0, ""),
        (0x01, "r"),
        (0x13, "rwC"),
        (0x1F, "rwcdC"),
        (0xFFFF, "rwcdC"),  # bits >= 5 are not shown
        (0x20, ""),
        (0x8008, "d"),
    ],
)
def test_action_letters(mask: int, letters: str) -> None:
    assert Action(mask).letters == letters


@pytest.mark.parametrize(
    ("a", "b", "subset"),
    [
        (NONE, NONE, True),
        (NONE, R, True),
        (R, R, True),
        (R, R | W, True),
        (R | W, R, False),
        (X, ALL, True),
        (ALL, R | W | C | D, False),
        (0xFFFF, ALL, False),
        (ALL, 0xFFFF, True),
    ],
)
def test_action_is_subset_of(a: int, b: int, subset: bool) -> None:
    assert Action(a).is_subset_of(b) is subset


def test_action_star_round_trips_to_ffff_and_renders_as_letters() -> None:
    cs = CaveatSet.from_json('[{"type":"Action","body":"*"}]')
    assert cs == CaveatSet([ActionCaveat(0xFFFF)])
    assert cs.encode() == bytes.fromhex("921acdffff")
    assert cs.to_json() == '[{"type":"Action","body":"rwcdC"}]'
    assert CaveatSet.decode(cs.encode()) == cs


@pytest.mark.parametrize(
    ("mask", "action", "expected"),
    [
        (R, R, None),
        (R, NONE, None),
        (R | W, W, None),
        (R, W, ForAct),
        (R, R | W, ForAct),
        (NONE, R, ForAct),
        (NONE, NONE, None),
        (ALL, X, None),
        (0xFFFF, 0xFFFF, None),
        (ALL, 0x20, ForAct),
    ],
)
def test_action_caveat(mask: int, action: int, expected: type[UnauthorizedError] | None) -> None:
    assert_prohibits(ActionCaveat(mask), fly(action=action), expected)


def test_action_caveat_with_a_parent_caveat() -> None:
    # Go's TestActionCaveat: a resource caveat and an action restriction.
    cs = [Organization(123, ALL), ActionCaveat(R)]
    assert validate_outcome(cs, fly(org_id=123, action=R)) == []
    assert_denied(cs, fly(org_id=123, action=W), causes=[ForAct])


def test_action_caveat_needs_an_action() -> None:
    assert_prohibits(ActionCaveat(R), DischargeRequest(at=T0), InvalidAccessError)


# -- ResourceSet.prohibits ---------------------------------------------------

FOO_BAR = ResourceSet({"foo": R | W, "bar": W})
STR_ZERO = ResourceSet({"": R})
STR_ZERO_MIXED = ResourceSet({"": R | W, "bar": W})
INT_SET = ResourceSet({1: R, 2: R | W})
INT_ZERO = ResourceSet({0: R | W})
INT_ZERO_MIXED = ResourceSet({0: R, 5: R})
EMPTY: ResourceSet[str] = ResourceSet({})
PREFIXES = ResourceSet({Prefix("https://s/"): R | W | D, Prefix("https://s/b/"): R | D})


@pytest.mark.parametrize(
    ("rs", "resource", "action", "expected"),
    [
        # Go's TestResourceSet
        pytest.param(FOO_BAR, "foo", R | W, None, id="listed"),
        pytest.param(FOO_BAR, "bar", W, None, id="listed-2"),
        pytest.param(FOO_BAR, None, W, Unspec, id="unspecified"),
        pytest.param(FOO_BAR, "baz", W, ForRes, id="unlisted"),
        pytest.param(FOO_BAR, "", W, ForRes, id="zero-id-needs-wildcard"),
        pytest.param(FOO_BAR, "foo", ALL, ForAct, id="action-exceeds"),
        pytest.param(FOO_BAR, "bar", R, ForAct, id="action-disjoint"),
        pytest.param(FOO_BAR, "foo", NONE, None, id="none-on-match"),
        pytest.param(FOO_BAR, "baz", NONE, ForRes, id="none-on-miss"),
        # Go's TestZeroID
        pytest.param(STR_ZERO, "foo", R, None, id="wildcard-any"),
        pytest.param(STR_ZERO, "", R, None, id="wildcard-zero"),
        pytest.param(STR_ZERO, None, R, Unspec, id="wildcard-unspecified"),
        pytest.param(STR_ZERO, "foo", W, ForAct, id="wildcard-mask"),
        pytest.param(STR_ZERO, "", W, ForAct, id="wildcard-zero-mask"),
        pytest.param(STR_ZERO, "foo", NONE, None, id="wildcard-none"),
        # Zero id with others: a bad caveat, checked before anything else.
        pytest.param(STR_ZERO_MIXED, "bar", W, BadCaveatError, id="mixed-zero-listed"),
        pytest.param(STR_ZERO_MIXED, "", R, BadCaveatError, id="mixed-zero-zero"),
        pytest.param(STR_ZERO_MIXED, None, R, BadCaveatError, id="mixed-zero-unspecified"),
        pytest.param(INT_ZERO_MIXED, 5, NONE, BadCaveatError, id="mixed-zero-int"),
        # Integer ids
        pytest.param(INT_SET, 1, R, None, id="int-listed"),
        pytest.param(INT_SET, 2, W, None, id="int-listed-2"),
        pytest.param(INT_SET, 1, W, ForAct, id="int-mask"),
        pytest.param(INT_SET, 3, R, ForRes, id="int-unlisted"),
        pytest.param(INT_SET, 0, NONE, ForRes, id="int-zero-needs-wildcard"),
        pytest.param(INT_SET, None, R, Unspec, id="int-unspecified"),
        pytest.param(INT_ZERO, 0, C, ForAct, id="int-wildcard-create-denied"),
        pytest.param(INT_ZERO, 0, R | W, None, id="int-wildcard-zero"),
        pytest.param(INT_ZERO, 12345, W, None, id="int-wildcard-any"),
        # Empty set matches nothing.
        pytest.param(EMPTY, "foo", NONE, ForRes, id="empty"),
        pytest.param(EMPTY, "", NONE, ForRes, id="empty-zero"),
        pytest.param(EMPTY, None, R, Unspec, id="empty-unspecified"),
        # Prefixes: every matching prefix applies and they intersect.
        pytest.param(PREFIXES, "https://s/a", R | W | D, None, id="prefix"),
        pytest.param(PREFIXES, "https://s/", W, None, id="prefix-exact"),
        pytest.param(PREFIXES, "https://s/b/x", R | D, None, id="prefix-both"),
        pytest.param(PREFIXES, "https://s/b/x", W, ForAct, id="prefix-intersect"),
        pytest.param(PREFIXES, "https://s/b/", W, ForAct, id="prefix-intersect-exact"),
        pytest.param(PREFIXES, "https://s/bx", W, None, id="prefix-outer-only"),
        pytest.param(PREFIXES, "https://s", R, ForRes, id="prefix-too-short"),
        pytest.param(PREFIXES, "https://t/", R, ForRes, id="prefix-miss"),
        pytest.param(PREFIXES, None, R, Unspec, id="prefix-unspecified"),
        pytest.param(ResourceSet({Prefix(""): R}), "anything", R, None, id="prefix-wildcard"),
        pytest.param(ResourceSet({Prefix(""): R}), "x", W, ForAct, id="prefix-wildcard-mask"),
        pytest.param(
            ResourceSet({Prefix(""): R, Prefix("a"): R}), "a", R, BadCaveatError, id="prefix-mixed"
        ),
        # A plain string key is not a prefix.
        pytest.param(ResourceSet({"https://s/": R}), "https://s/a", R, ForRes, id="not-a-prefix"),
    ],
)
def test_resource_set_prohibits(
    rs: ResourceSet[Any],
    resource: Any,
    action: int,
    expected: type[UnauthorizedError] | None,
) -> None:
    err = rs.prohibits(resource, action, "thing")
    if expected is None:
        assert err is None
    else:
        assert type(err) is expected


def _spec_prohibits(entries: dict[Any, int], resource: Any, action: int) -> type | None:
    """Spec 9.2 written out plainly: the model the fast lookup must agree with."""
    if len(entries) > 1 and any(not k for k in entries):
        return BadCaveatError
    if resource is None:
        return Unspec
    matching = [
        v
        for k, v in entries.items()
        if not k
        or k == resource
        or (isinstance(k, Prefix) and isinstance(resource, str) and resource.startswith(k))
    ]
    if not matching:
        return ForRes
    perm = reduce(lambda a, b: a & b, matching, 0xFFFF)
    return ForAct if action & perm != action else None


_MASKS = st.sampled_from([0, 0x01, 0x02, 0x03, 0x1F, 0xFFFF, 0x1FFFF])
_STR_IDS = st.sampled_from(["", "a", "ab", "b", "é"])


@given(
    entries=st.one_of(
        st.dictionaries(st.integers(0, 4), _MASKS, max_size=4),
        st.dictionaries(_STR_IDS, _MASKS, max_size=4),
        st.dictionaries(_STR_IDS.map(Prefix), _MASKS, max_size=4),
    ),
    resource=st.one_of(
        st.none(),
        st.integers(0, 5),
        _STR_IDS,
        _STR_IDS.map(Prefix),
        st.sampled_from([True, False, 1.0, b"a"]),
    ),
    action=st.sampled_from([0, R, W, R | W, ALL, 0x10000]),
)
# Masks wider than 16 bits (only hand-built sets hold them) count as 16 bits.
@example(entries={1: 0x1FFFF}, resource=1, action=0x10000)
@example(entries={"a": 0x1FFFF}, resource="a", action=0x10000)
def test_resource_set_lookup_agrees_with_the_spec(
    entries: dict[Any, int], resource: Any, action: int
) -> None:
    # Whether prohibits() takes its dict lookup (no wildcard or Prefix key,
    # an exact int or str) or its scan, the answer is the spec's, for sets
    # built by hand and sets decoded from the wire alike.
    sets = [ResourceSet(entries)]
    if all(v <= 0xFFFF for v in entries.values()):
        key_type = type(next(iter(entries))) if entries else int
        wire = {(str(k) if key_type is Prefix else k): v for k, v in entries.items()}
        sets.append(ResourceSet.from_msgpack(wire, key_type, "thing"))
    expected = _spec_prohibits(entries, resource, action)
    for rs in sets:
        assert rs is not None
        err = rs.prohibits(resource, action, "thing")
        assert (None if err is None else type(err)) is expected


def test_resource_set_error_carries_the_caveat() -> None:
    cav = Apps({1: R})
    err = cav.prohibits(fly(app_id=2))
    assert type(err) is ForRes
    assert err.caveat is cav


def test_unauthorized_for_resource_and_action_share_text_not_identity() -> None:
    assert ForRes.default_message == ForAct.default_message == "unauthorized for"
    assert not issubclass(ForRes, ForAct) and not issubclass(ForAct, ForRes)
    assert issubclass(Unspec, InvalidAccessError) and issubclass(
        InvalidAccessError, UnauthorizedError
    )


# -- ResourceSet encodings --------------------------------------------------


def test_resource_set_msgpack_keys_sorted_equals_hand_built() -> None:
    # Apps{3: r, 1: r, 2: r}: 92 03 | 91 | 83 01 01 02 01 03 01
    hand_built = bytes([0x92, 0x03, 0x91, 0x83, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01])
    cav = Apps({3: R, 1: R, 2: R})
    assert cav.packed() == hand_built
    assert Apps({1: R, 2: R, 3: R}).packed() == hand_built


def test_resource_set_msgpack_unsorted_input_decodes_and_re_encodes_sorted() -> None:
    unsorted = bytes([0x92, 0x03, 0x91, 0x83, 0x03, 0x01, 0x01, 0x01, 0x02, 0x01])
    cs = CaveatSet.decode(unsorted)
    assert cs == CaveatSet([Apps({1: R, 2: R, 3: R})])
    assert cs.encode() == bytes([0x92, 0x03, 0x91, 0x83, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01])


@pytest.mark.parametrize(
    ("caveat", "hex_bytes"),
    [
        # numeric order for ints, compact encodings
        (Apps({300: R, 2: 0xFFFF}), "92 03 91 82 02 cd ffff cd 012c 01"),
        # bytewise order for strings: "B" < "a" < "b"
        (Volumes({"b": R, "a": W, "B": D}), "92 02 91 83 a142 08 a161 02 a162 01"),
        (
            StorageObjects({"s3://b": R, "s3://a": R}),
            "92 1d 91 82 a673333a2f2f61 01 a673333a2f2f62 01",
        ),
        (Apps(None), "92 03 91 c0"),
        (Apps({}), "92 03 91 80"),
        (Machines({"": ALL}), "92 07 91 81 a0 1f"),
    ],
)
def test_resource_set_msgpack_bytes(caveat: Any, hex_bytes: str) -> None:
    expected = bytes.fromhex(hex_bytes.replace(" ", ""))
    assert caveat.packed() == expected
    assert CaveatSet.decode(expected) == CaveatSet([caveat])


def test_resource_set_json_map_form() -> None:
    cs = CaveatSet([Apps({10: R, 9: R | W, 1: 0xFFFF})])
    # Keys are strings, sorted as Go sorts JSON object keys (by their text).
    assert cs.to_json() == ('[{"type":"Apps","body":{"apps":{"1":"rwcdC","10":"r","9":"rw"}}}]')
    back = CaveatSet.from_json(cs.to_json())
    assert back == CaveatSet([Apps({10: R, 9: R | W, 1: ALL})])


def test_resource_set_json_like_go_new() -> None:
    # Go: resset.New(ActionRead, 3, 1, 2) marshals like {"1":"r","2":"r","3":"r"}.
    body = Apps({3: R, 1: R, 2: R}).to_json()
    assert json.dumps(body, separators=(",", ":")) == '{"apps":{"1":"r","2":"r","3":"r"}}'


@pytest.mark.parametrize(
    "body",
    [
        '{"apps":{"x":"r"}}',
        '{"apps":{"-1":"r"}}',
        '{"apps":{"1.0":"r"}}',
        '{"apps":{"18446744073709551616":"r"}}',
        '{"apps":{"1":1}}',
        '{"apps":["1"]}',
    ],
)
def test_resource_set_json_rejects_bad_ids_and_masks(body: str) -> None:
    with pytest.raises(DecodeError):
        CaveatSet.from_json(f'[{{"type":"Apps","body":{body}}}]')


def test_resource_set_json_null_is_nil_and_denies() -> None:
    cs = CaveatSet.from_json('[{"type":"Apps","body":{"apps":null}}]')
    assert cs == CaveatSet([Apps(None)])
    assert cs.encode() == bytes.fromhex("920391c0")
    assert_denied(cs, fly(app_id=1), causes=[ForRes])


# -- IfPresent ---------------------------------------------------------------

# Go's TestIfPresent, with Organization as the parent and Apps as the child.
PARENT_CHILD = [
    Organization(123, R | W | C | D),
    IfPresent([Apps({234: R | D | X})], R | C),
]


@pytest.mark.parametrize(
    ("access", "causes"),
    [
        # failing before IfPresent
        pytest.param(fly(org_id=None, app_id=234, action=R), [Unspec], id="no-parent"),
        pytest.param(fly(org_id=987, app_id=234, action=R), [ForRes], id="bad-parent"),
        # "if" branch
        pytest.param(fly(org_id=123, app_id=234, action=R | D), [], id="if-ok"),
        pytest.param(fly(org_id=123, app_id=876, action=R), [ForRes], id="if-wrong-child"),
        pytest.param(fly(org_id=123, app_id=234, action=W), [ForAct], id="if-child-denies"),
        pytest.param(fly(org_id=123, app_id=234, action=X), [ForAct], id="if-parent-denies"),
        # "else" branch
        pytest.param(fly(org_id=123, action=R | C), [], id="else-ok"),
        pytest.param(fly(org_id=123, action=W), [ForAct], id="else-denies"),
        pytest.param(fly(org_id=123, action=X), [ForAct, ForAct], id="else-and-parent-deny"),
        pytest.param(fly(org_id=123, action=NONE), [], id="else-none"),
    ],
)
def test_if_present_branch_table(access: Any, causes: list[type[UnauthorizedError]]) -> None:
    assert validate_outcome(PARENT_CHILD, access) == causes


@pytest.mark.parametrize(
    ("caveat", "access", "expected"),
    [
        # Always-relevant caveats take the "if" branch: Else is ignored.
        pytest.param(
            IfPresent([ValidityWindow(0, 2 * int(T0))], NONE), fly(action=W), None, id="vw-in"
        ),
        pytest.param(
            IfPresent([ValidityWindow(0, 100)], ALL),
            fly(action=NONE),
            UnauthorizedError,
            id="vw-out",
        ),
        pytest.param(IfPresent([ActionCaveat(R)], ALL), fly(action=W), ForAct, id="action-if"),
        pytest.param(IfPresent([ActionCaveat(ALL)], NONE), fly(action=W), None, id="action-if-ok"),
        pytest.param(IfPresent([FlySrc()], NONE), fly(action=W), None, id="flysrc-relevant"),
        pytest.param(
            IfPresent([Apps({0: R, 1: R})], ALL), fly(action=NONE), BadCaveatError, id="bad-rs"
        ),
        # Irrelevant caveats fall through to Else.
        pytest.param(IfPresent([Apps({1: R})], W), fly(action=W), None, id="else-allows"),
        pytest.param(IfPresent([Apps({1: R})], R), fly(action=W), ForAct, id="else-denies"),
        pytest.param(IfPresent([], R), fly(action=R), None, id="empty-ifs-else-ok"),
        pytest.param(IfPresent([], R), fly(action=W), ForAct, id="empty-ifs-else-denies"),
        # One relevant caveat is enough to take the "if" branch.
        pytest.param(
            IfPresent([Apps({1: R}), Volumes({"v": W})], NONE),
            fly(app_id=1, action=R),
            None,
            id="one-relevant-ok",
        ),
        pytest.param(
            IfPresent([Apps({1: R}), FeatureSet({"wg": ALL})], ALL),
            fly(app_id=2, action=R),
            ForRes,
            id="one-relevant-denies",
        ),
        # Nil Ifs never passes; a missing action is an invalid access.
        pytest.param(IfPresent(None, ALL), fly(action=NONE), BadCaveatError, id="nil-ifs"),
        pytest.param(
            IfPresent([Apps({1: R})], ALL),
            DischargeRequest(at=T0),
            InvalidAccessError,
            id="no-action",
        ),
    ],
)
def test_if_present(
    caveat: IfPresent, access: Any, expected: type[UnauthorizedError] | None
) -> None:
    assert_prohibits(caveat, access, expected)


def test_if_present_collects_every_relevant_error() -> None:
    cav = IfPresent([Apps({1: R}), ActionCaveat(R), Volumes({"v": ALL})], ALL)
    err = cav.prohibits(fly(app_id=2, action=W))
    assert err is not None
    assert [type(e) for e in err.leaves()] == [ForRes, ForAct]
    assert err.contains(ForRes) and err.contains(ForAct)
    assert not err.contains(Unspec)


NESTED = IfPresent([IfPresent([Machines({"m1": ALL})], R)], ALL)


@pytest.mark.parametrize(
    ("access", "expected"),
    [
        # The inner IfPresent is always relevant to the outer one, so the
        # outer Else (everything) never applies.
        pytest.param(fly(app_id=1, action=R), None, id="inner-else-ok"),
        pytest.param(fly(app_id=1, action=W), ForAct, id="inner-else-denies"),
        pytest.param(fly(app_id=1, machine="m1", action=W), None, id="inner-if-ok"),
        pytest.param(fly(app_id=1, machine="m2", action=R), ForRes, id="inner-if-denies"),
    ],
)
def test_if_present_nesting(access: Any, expected: type[UnauthorizedError] | None) -> None:
    assert_prohibits(NESTED, access, expected)
    assert validate_outcome([NESTED], access) == ([] if expected is None else [expected])


def test_if_present_nil_ifs_from_the_wire_is_rejected() -> None:
    cs = CaveatSet.decode(bytes.fromhex("920d92c001"))
    assert cs == CaveatSet([IfPresent(None, R)])
    assert cs.encode() == bytes.fromhex("920d92c001")
    assert_denied(cs, fly(action=NONE), causes=[BadCaveatError])


def test_if_present_and_action_round_trip() -> None:
    cs = CaveatSet([IfPresent([ValidityWindow(123, 234)], D), ActionCaveat(R)])
    text = cs.to_json()
    assert text == (
        '[{"type":"IfPresent","body":{"ifs":[{"type":"ValidityWindow",'
        '"body":{"not_before":123,"not_after":234}}],"else":"d"}},'
        '{"type":"Action","body":"r"}]'
    )
    assert CaveatSet.from_json(text) == cs
    assert CaveatSet.decode(cs.encode()) == cs
    # [13, [[4, [123, 234]], 8], 26, 1]
    assert cs.encode() == bytes.fromhex("940d929204927bccea081a01")
