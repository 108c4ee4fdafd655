"""The caveat registry, unregistered caveats and JSON type names (spec sections 3.3, 7, 9.1)."""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

import attrs
import msgpack
import pytest

from macaroons_authz import (
    CAV_MAX_USER_DEFINED,
    CAV_MAX_USER_REGISTERABLE,
    CAV_MIN_USER_DEFINED,
    CAV_MIN_USER_REGISTERABLE,
    DEFAULT_REGISTRY,
    Action,
    ActionCaveat,
    Apps,
    BadCaveatError,
    Caveat,
    CaveatRegistry,
    CaveatSet,
    DecodeError,
    IfPresent,
    Macaroon,
    Organization,
    RegistrationError,
    UnauthorizedError,
    UnregisteredCaveat,
    ValidityWindow,
)
from macaroons_authz.caveats import _base

LOC = "https://api.example/v1"
NOW = 1_700_000_000
U64_MAX = 2**64 - 1


@attrs.frozen
class Widget(Caveat):
    """A private caveat: allows only the access's widget."""

    id: int

    type_number = CAV_MIN_USER_DEFINED + 7
    name = "Widget"

    def prohibits(self, access: Any) -> UnauthorizedError | None:
        if getattr(access, "widget", None) == self.id:
            return None
        return UnauthorizedError(f"unauthorized for widget {self.id}", caveat=self)

    @classmethod
    def from_msgpack(cls, body: Any, registry: Any, depth: int = 0) -> Widget:
        fields = _base.struct(body, 1, cls.name)
        return cls(0 if fields is None else _base.uint(fields[0], "widget id"))


@attrs.frozen
class Gadget(Caveat):
    """A caveat in the globally registrable range, with an alias."""

    label: str

    type_number = CAV_MIN_USER_REGISTERABLE + 5
    name = "Gadget"
    aliases = ("OldGadget",)

    def prohibits(self, access: Any) -> UnauthorizedError | None:
        return None


@attrs.frozen
class _Access:
    at: float = NOW
    action: int = Action.READ
    widget: int | None = None
    app_id: int | None = None

    def now(self) -> float:
        return self.at

    def validate(self) -> None:
        return None


class _BareAccess:
    """An access with nothing but the two required operations."""

    def now(self) -> float:
        return NOW

    def validate(self) -> None:
        return None


def _caveat_class(number: int, label: str, also: tuple[str, ...] = ()) -> type[Caveat]:
    @attrs.frozen
    class Made(Caveat):
        value: int = 0
        type_number = number
        name = label
        aliases = also

    return Made


@pytest.fixture
def registry() -> CaveatRegistry:
    reg = DEFAULT_REGISTRY.copy()
    assert reg.register(Widget) is Widget
    assert reg.register(Gadget) is Gadget
    return reg


# -- registering --------------------------------------------------------------


def test_register_on_a_copy_of_the_default_registry(registry: CaveatRegistry) -> None:
    assert Widget in registry and Gadget in registry
    assert registry.lookup(Widget.type_number) is Widget
    assert registry.lookup_name("Widget") is Widget
    assert registry.lookup_name("Gadget") is registry.lookup_name("OldGadget") is Gadget
    assert registry.lookup(Organization.type_number) is Organization  # built-ins kept
    assert Widget not in DEFAULT_REGISTRY
    assert DEFAULT_REGISTRY.lookup(Widget.type_number) is None
    assert DEFAULT_REGISTRY.lookup_name("Widget") is None


def test_default_registry_is_frozen() -> None:
    with pytest.raises(RegistrationError, match="cannot be changed"):
        DEFAULT_REGISTRY.register(Widget)
    assert DEFAULT_REGISTRY.lookup(Widget.type_number) is None


def test_copies_are_independent(registry: CaveatRegistry) -> None:
    again = registry.copy()
    extra = _caveat_class(CAV_MIN_USER_DEFINED + 100, "Extra")
    again.register(extra)
    assert extra in again and extra not in registry
    assert Widget in again
    fresh = DEFAULT_REGISTRY.copy()
    assert Widget not in fresh
    fresh.register(Widget)  # each copy may register the same class once


@pytest.mark.parametrize("number", [U64_MAX, 2**64, -1, 2**100])
def test_type_numbers_outside_the_uint64_range_are_refused(number: int) -> None:
    reg = DEFAULT_REGISTRY.copy()
    for allow_reserved in (False, True):
        with pytest.raises(RegistrationError, match="type_number must be an int from 0 to"):
            reg.register(_caveat_class(number, f"T{number}"), allow_reserved=allow_reserved)
    assert reg.lookup_name(f"T{number}") is None


@pytest.mark.parametrize("number", [1, 17, 32, 2**16 - 1, 2**16, 65791, 2**32 - 1])
def test_fly_reserved_type_numbers_need_allow_reserved(number: int) -> None:
    reg = DEFAULT_REGISTRY.copy()
    cls = _caveat_class(number, f"T{number}")
    with pytest.raises(RegistrationError, match=r"reserved range.*allow_reserved=True"):
        reg.register(cls)
    assert reg.lookup(number) is None and reg.lookup_name(f"T{number}") is None
    assert reg.register(cls, allow_reserved=True) is cls
    assert reg.lookup(number) is cls and reg.lookup_name(f"T{number}") is cls
    assert DEFAULT_REGISTRY.lookup(number) is None
    with pytest.raises(RegistrationError, match="cannot be changed"):
        DEFAULT_REGISTRY.register(cls, allow_reserved=True)


@pytest.mark.parametrize("number", [0, 4, 13, 25, 31])
def test_built_in_type_numbers_are_taken_even_with_allow_reserved(number: int) -> None:
    reg = DEFAULT_REGISTRY.copy()
    with pytest.raises(RegistrationError, match=f"caveat type {number} is already registered"):
        reg.register(_caveat_class(number, f"T{number}"), allow_reserved=True)
    assert reg.lookup(number) is DEFAULT_REGISTRY.lookup(number)


@pytest.mark.parametrize(
    "number",
    [
        CAV_MIN_USER_REGISTERABLE,
        CAV_MAX_USER_REGISTERABLE,
        CAV_MIN_USER_DEFINED,
        CAV_MAX_USER_DEFINED,
    ],
)
def test_type_numbers_at_the_edges_of_the_user_ranges_are_accepted(number: int) -> None:
    assert CAV_MIN_USER_REGISTERABLE == 2**32 and CAV_MIN_USER_DEFINED == 2**48
    assert CAV_MAX_USER_DEFINED == 2**64 - 2
    reg = DEFAULT_REGISTRY.copy()
    cls = _caveat_class(number, "Edge")
    reg.register(cls)
    assert reg.lookup(number) is cls


def test_non_int_type_numbers_and_non_caveat_classes_are_refused() -> None:
    reg = DEFAULT_REGISTRY.copy()

    @attrs.frozen
    class BoolNumbered(Caveat):
        type_number = True  # type: ignore[assignment]
        name = "BoolNumbered"

    class NotAttrs(Caveat):
        type_number = CAV_MIN_USER_DEFINED + 1
        name = "NotAttrs"

    @attrs.frozen
    class NotACaveat:
        type_number = CAV_MIN_USER_DEFINED + 2
        name = "NotACaveat"

    with pytest.raises(RegistrationError, match="type_number"):
        reg.register(BoolNumbered)
    with pytest.raises(RegistrationError, match="attrs class subclassing Caveat"):
        reg.register(NotAttrs)
    with pytest.raises(RegistrationError, match="attrs class subclassing Caveat"):
        reg.register(NotACaveat)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="non-empty str name"):
        reg.register(_caveat_class(CAV_MIN_USER_DEFINED + 3, ""))
    for n in (1, 2, 3):
        assert reg.lookup(CAV_MIN_USER_DEFINED + n) is None


def test_duplicate_numbers_names_and_aliases_are_refused(registry: CaveatRegistry) -> None:
    clashes = [
        (_caveat_class(Widget.type_number, "OtherWidget"), "already registered"),
        (_caveat_class(CAV_MIN_USER_DEFINED + 50, "Widget"), "'Widget' is already registered"),
        (_caveat_class(CAV_MIN_USER_DEFINED + 51, "Organization"), "'Organization'"),
        (_caveat_class(CAV_MIN_USER_DEFINED + 52, "DeprecatedApps"), "'DeprecatedApps'"),
        (_caveat_class(CAV_MIN_USER_DEFINED + 53, "OldGadget"), "'OldGadget'"),
        (_caveat_class(CAV_MIN_USER_DEFINED + 54, "Fresh", ("Apps",)), "'Apps'"),
        (_caveat_class(CAV_MIN_USER_DEFINED + 55, "Fresh2", ("Gadget",)), "'Gadget'"),
    ]
    for cls, message in clashes:
        with pytest.raises(RegistrationError, match=message):
            registry.register(cls)
    # Nothing of a refused class was kept.
    assert registry.lookup(Widget.type_number) is Widget
    for n in range(50, 56):
        assert registry.lookup(CAV_MIN_USER_DEFINED + n) is None
    assert registry.lookup_name("Fresh") is None and registry.lookup_name("Fresh2") is None
    with pytest.raises(RegistrationError, match="already registered"):
        registry.register(Widget)


# -- unregistered caveats in tokens ---------------------------------------------------


def _mint(*caveats: Caveat) -> tuple[bytes, bytes]:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(*caveats)
    return key, m.encode()


def test_unregistered_caveats_round_trip_byte_exactly_inside_tokens(
    registry: CaveatRegistry,
) -> None:
    key, data = _mint(Organization(1, Action.ALL), Widget(9), Gadget("g"))
    m = Macaroon.decode(data)  # the default registry knows neither
    org, widget, gadget = m.unsafe_caveats
    assert org == Organization(1, Action.ALL)
    assert isinstance(widget, UnregisteredCaveat) and widget.type_number == Widget.type_number
    assert isinstance(gadget, UnregisteredCaveat) and gadget.type_number == Gadget.type_number
    assert widget.packed() == Widget(9).packed()
    assert m.encode() == data
    verified = m.verify(key)
    assert [type(c) for c in verified] == [Organization, UnregisteredCaveat, UnregisteredCaveat]
    # And a holder can attenuate such a token without knowing the types.
    m.add(ActionCaveat(Action.READ))
    assert len(Macaroon.decode(m.encode()).verify(key)) == 4


def test_unregistered_caveats_round_trip_inside_if_present(registry: CaveatRegistry) -> None:
    inner = IfPresent((Widget(3), Apps({5: Action.READ})), Action.READ)
    outer = IfPresent((inner, Gadget("x")), Action.NONE)
    key, data = _mint(outer)
    m = Macaroon.decode(data)
    (got,) = m.unsafe_caveats
    assert isinstance(got, IfPresent) and got.ifs is not None
    got_inner = got.ifs[0]
    assert isinstance(got_inner, IfPresent) and got_inner.ifs is not None
    assert isinstance(got_inner.ifs[0], UnregisteredCaveat)
    assert got_inner.ifs[1] == Apps({5: Action.READ})
    assert isinstance(got.ifs[1], UnregisteredCaveat)
    assert got.packed() == outer.packed()
    assert m.encode() == data
    m.verify(key)
    cs = CaveatSet.decode(CaveatSet([outer]).encode())
    assert cs.encode() == CaveatSet([outer]).encode()


def test_unregistered_caveats_always_fail_validation(registry: CaveatRegistry) -> None:
    key, data = _mint(Widget(9))
    verified = Macaroon.decode(data).verify(key)
    for access in (_BareAccess(), _Access(widget=9)):
        with pytest.raises(BadCaveatError, match="unregistered caveat type"):
            verified.validate(access)
    # Registered, the same token allows the widget it names.
    known = Macaroon.decode(data, registry).verify(key)
    known.validate(_Access(widget=9))
    with pytest.raises(UnauthorizedError, match="widget 9"):
        known.validate(_Access(widget=8))


def test_unregistered_caveat_inside_if_present_fails_validation(
    registry: CaveatRegistry,
) -> None:
    key, data = _mint(IfPresent((Widget(9), Apps({5: Action.ALL})), Action.ALL))
    verified = Macaroon.decode(data).verify(key)
    for access in (_Access(widget=9), _Access(widget=9, app_id=5), _Access(app_id=6)):
        with pytest.raises(UnauthorizedError) as info:
            verified.validate(access)
        assert info.value.contains(BadCaveatError)
    Macaroon.decode(data, registry).verify(key).validate(_Access(widget=9, app_id=5))


def test_unregistered_caveat_fails_alongside_passing_caveats(registry: CaveatRegistry) -> None:
    key, data = _mint(ActionCaveat(Action.ALL), Widget(1), ValidityWindow(0, 2**40))
    verified = Macaroon.decode(data).verify(key)
    with pytest.raises(BadCaveatError):
        verified.validate(_Access())
    verified[:1].validate(_Access())  # the others alone pass
    verified[2:].validate(_Access())
    verified.validate()  # no access at all is allowed, as in Go


def test_unregistered_caveats_re_decode_once_registered(registry: CaveatRegistry) -> None:
    key, data = _mint(Widget(9), IfPresent((Gadget("y"),), Action.READ))
    blind = Macaroon.decode(data)
    assert isinstance(blind.unsafe_caveats[0], UnregisteredCaveat)
    again = Macaroon.decode(blind.encode(), registry)
    assert list(again.unsafe_caveats) == [Widget(9), IfPresent((Gadget("y"),), Action.READ)]
    assert list(again.verify(key)) == list(again.unsafe_caveats)
    packed = CaveatSet([Widget(9)]).encode()
    assert CaveatSet.decode(CaveatSet.decode(packed).encode(), registry)[0] == Widget(9)


def _sign_raw(key: bytes, nonce: bytes, packed: list[bytes]) -> bytes:
    cur = hmac.digest(key, nonce, "sha256")
    for p in packed:
        cur = hmac.digest(cur, p, "sha256")
    return cur


def test_unregistered_caveat_keeps_non_canonical_bytes_and_its_mac() -> None:
    """An unknown body is MACed as it came, not as this library would write it."""
    key = os.urandom(32)
    number = CAV_MIN_USER_DEFINED + 99
    type_bytes = msgpack.packb(number)
    bodies = [
        b"\xcd\x00\x05",  # 5 in a needlessly wide form
        b"\x82\x02\x01\x01\x01",  # a map with keys out of order
        b"\xd4\x01\x00",  # an extension type
        b"\xa1a",
    ]
    packed = [b"\x92" + type_bytes + body for body in bodies]
    nonce = msgpack.packb([b"kid", os.urandom(16), False])
    caveats = b"".join(p[1:] for p in packed)
    header = bytes([0x90 | 2 * len(packed)])
    tail = _sign_raw(key, nonce, packed)
    data = b"\x94" + nonce + msgpack.packb(LOC) + header + caveats + msgpack.packb(tail)
    m = Macaroon.decode(data)
    assert [c.packed() for c in m.unsafe_caveats] == packed
    assert m.encode() == data
    assert len(m.verify(key)) == len(bodies)
    with pytest.raises(DecodeError, match="msgpack to JSON"):
        m.to_json()


# -- JSON -------------------------------------------------------------------------------


def test_unknown_json_type_name_becomes_an_unregistered_caveat() -> None:
    text = '[{"type":"NoSuchCaveat","body":{"anything":[1,2]}}]'
    (cav,) = CaveatSet.from_json(text)
    assert isinstance(cav, UnregisteredCaveat)
    assert cav.type_number == U64_MAX
    assert cav.json_body == {"anything": [1, 2]}
    assert json.loads(CaveatSet([cav]).to_json())[0]["body"] == {"anything": [1, 2]}
    with pytest.raises(DecodeError, match="cannot convert unregistered caveats from JSON"):
        CaveatSet([cav]).encode()


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [
        ("4", ValidityWindow(1, 2)),
        ("0004", ValidityWindow(1, 2)),
        ("ValidityWindow", ValidityWindow(1, 2)),
    ],
)
def test_decimal_json_type_names_select_by_number(type_name: str, expected: Caveat) -> None:
    text = json.dumps([{"type": type_name, "body": {"not_before": 1, "not_after": 2}}])
    assert list(CaveatSet.from_json(text)) == [expected]


@pytest.mark.parametrize("type_name", ["-4", "+4", " 4", "4.0", "0x4", "\u0664", str(2**64)])
def test_malformed_numeric_type_names_are_unregistered(type_name: str) -> None:
    (cav,) = CaveatSet.from_json(json.dumps([{"type": type_name, "body": None}]))
    assert isinstance(cav, UnregisteredCaveat) and cav.type_number == U64_MAX


def test_private_types_render_as_decimal_strings_and_parse_back(
    registry: CaveatRegistry,
) -> None:
    text = CaveatSet([Widget(9), Gadget("g")]).to_json()
    assert json.loads(text) == [
        {"type": str(CAV_MIN_USER_DEFINED + 7), "body": {"id": 9}},
        {"type": "Gadget", "body": {"label": "g"}},  # below 2**48: by name
    ]
    assert list(CaveatSet.from_json(text, registry)) == [Widget(9), Gadget("g")]
    assert CaveatSet.from_json('[{"type":"OldGadget","body":{"label":"a"}}]', registry)[0] == (
        Gadget("a")
    )
    blind = CaveatSet.from_json(text)
    assert [type(c) for c in blind] == [UnregisteredCaveat, UnregisteredCaveat]
    assert blind[0].type_number == Widget.type_number
    assert blind[1].type_number == U64_MAX  # a name nobody registered
    assert json.loads(blind.to_json())[0] == {"type": str(Widget.type_number), "body": {"id": 9}}


def test_registered_caveats_convert_between_json_and_msgpack(registry: CaveatRegistry) -> None:
    cs = CaveatSet([Widget(9), Gadget("g"), ActionCaveat(Action.READ)])
    via_json = CaveatSet.from_json(cs.to_json(), registry)
    assert via_json == cs and via_json.encode() == cs.encode()
    assert CaveatSet.decode(cs.encode(), registry) == cs


@pytest.mark.parametrize(
    "text",
    [
        '[{"type":"ValidityWindow","body":{"not_before":1,"not_after":2,"extra":3}}]',
        '[{"type":"ValidityWindow","body":{"notBefore":1}}]',
        '[{"type":"Apps","body":{"apps":{},"volumes":{}}}]',
        '[{"type":"Organization","body":{"id":1,"mask":"r","Mask":"w"}}]',
        '[{"type":"IfPresent","body":{"ifs":[],"else":"r","then":"w"}}]',
        '[{"type":"Commands","body":[{"args":["ls"],"exact":true,"prefix":false}]}]',
        '[{"type":"3P","body":{"location":"x"}}]',
        '[{"type":"Action","body":"r","extra":1}]',
        '[{"type":"Widget","body":{"id":1,"colour":"red"}}]',
    ],
)
def test_unknown_json_keys_are_refused(text: str, registry: CaveatRegistry) -> None:
    with pytest.raises(DecodeError, match="unknown keys"):
        CaveatSet.from_json(text, registry)


def test_json_caveat_needs_a_body_but_null_is_the_zero_value() -> None:
    for text in ('[{"type":"FlySrc"}]', '[{"type":"Organization"}]', '[{"type":"NoSuch"}]'):
        with pytest.raises(DecodeError, match='needs a "body"'):
            CaveatSet.from_json(text)
    assert list(CaveatSet.from_json('[{"type":"Organization","body":null}]')) == [
        Organization(0, 0)
    ]
    assert list(CaveatSet.from_json('[{"type":"Apps","body":{}}]')) == [Apps(None)]


def test_json_caveat_list_shape_errors_are_decode_errors() -> None:
    for text in (
        "{}",
        '"x"',
        "[1]",
        '[{"body":{}}]',
        '[{"type":4,"body":{}}]',
        "[",
        "[" * 100_000,
    ):
        with pytest.raises(DecodeError):
            CaveatSet.from_json(text)


def test_nil_ifpresent_beside_an_unregistered_caveat_decodes_as_the_zero_value() -> None:
    from macaroons_authz import CaveatSet, IfPresent, UnregisteredCaveat

    # [13, nil, 2**48+1, "x"]: the unknown type sends decoding down the exact path.
    data = bytes.fromhex("940dc0cf0001000000000001a178")
    cs = CaveatSet.decode(data)
    assert cs[0] == IfPresent(None, 0)
    assert isinstance(cs[1], UnregisteredCaveat)
    assert cs.encode() == bytes.fromhex("940d92c000cf0001000000000001a178")
