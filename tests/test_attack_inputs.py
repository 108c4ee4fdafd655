"""Hostile input to the core's entry points (issue 15, items 5, 6 and 12; issue 16).

Each test reproduces an attack of the adversarial review: a NaN or infinite
time that passed validity checks, an unknown action letter that widened a
mask, deep JSON and huge numbers that raised exceptions outside the error
tree. Every refusal is a typed :class:`MacaroonError`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import attrs
import msgpack
import pytest

from macaroons_authz import (
    MAX_NESTING,
    Action,
    ActionCaveat,
    Apps,
    CaveatSet,
    DecodeError,
    DischargeRequest,
    FlyAccess,
    FlyioIdentity,
    FromMachineSource,
    GoogleUserID,
    IfPresent,
    InvalidAccessError,
    Macaroon,
    Machines,
    MaxValidity,
    Nonce,
    Organization,
    UnauthorizedError,
    UnregisteredCaveat,
    ValidityWindow,
    to_header,
)
from macaroons_authz._gojson import MAX_JSON_DEPTH
from macaroons_authz.caveats._base import UNREGISTERED_TYPE
from macaroons_authz.cli import main

T0 = 1_700_000_000
LOC = "https://api.example/v1"
NON_FINITE = [math.nan, math.inf, -math.inf]
NON_FINITE_IDS = ["nan", "inf", "-inf"]


# -- item 5: times are finite ----------------------------------------------------------------


@pytest.mark.parametrize("t", NON_FINITE, ids=NON_FINITE_IDS)
def test_fly_access_refuses_a_non_finite_time(t: float) -> None:
    with pytest.raises(InvalidAccessError, match="must be a finite number of unix seconds"):
        FlyAccess(org_id=1, action=Action.READ, at=t)
    with pytest.raises(InvalidAccessError, match="must be a finite number"):
        FlyAccess.from_json('{"orgid":1,"action":"r"}', now=t)
    with pytest.raises(InvalidAccessError):
        attrs.evolve(FlyAccess(org_id=1, at=T0), at=t)


@pytest.mark.parametrize("t", ["soon", None, b"1"], ids=["str", "none", "bytes"])
def test_fly_access_refuses_times_that_are_not_numbers(t: object) -> None:
    with pytest.raises(InvalidAccessError, match=r"not a (str|NoneType|bytes)"):
        FlyAccess(org_id=1, at=t)  # type: ignore[arg-type]
    # Any int is a finite time, compared exactly.
    assert FlyAccess(org_id=1, at=10**400).now() == 10**400


@pytest.mark.parametrize("field", ["at", "expiry"])
@pytest.mark.parametrize("t", NON_FINITE, ids=NON_FINITE_IDS)
def test_discharge_request_refuses_a_non_finite_time(field: str, t: float) -> None:
    with pytest.raises(InvalidAccessError, match=f"DischargeRequest {field} must be a finite"):
        DischargeRequest(**{field: t})  # type: ignore[arg-type]


@attrs.define
class _Clock:
    """An access whose clock says anything (a custom access, or a broken one)."""

    t: object
    org_id: int = 1
    action: int = Action.READ

    def now(self) -> object:
        return self.t

    def validate(self) -> None:
        pass


@pytest.mark.parametrize("t", [*NON_FINITE, "noon"], ids=[*NON_FINITE_IDS, "str"])
def test_validity_window_fails_closed_on_a_non_finite_now(t: object) -> None:
    window = ValidityWindow(T0 - 10, T0 + 10)
    err = window.prohibits(_Clock(t))  # type: ignore[arg-type]
    assert isinstance(err, InvalidAccessError)
    assert "the access's time must be a finite number of unix seconds" in str(err)
    assert err.caveat is window
    # Also where it matters: nested in IfPresent, and in a verified set.
    for caveats in (CaveatSet([window]), CaveatSet([IfPresent((window,), Action.ALL)])):
        with pytest.raises(UnauthorizedError) as info:
            caveats.validate(_Clock(t))  # type: ignore[arg-type]
        assert info.value.contains(InvalidAccessError)
    key = os.urandom(32)
    token = Macaroon.new(b"kid", LOC, key)
    token.add(window)
    verified = Macaroon.decode(token.encode()).verify(key)
    with pytest.raises(UnauthorizedError):
        verified.validate(_Clock(t))  # type: ignore[arg-type]
    verified.validate(_Clock(T0))
    verified.validate(_Clock(T0 + 10.0))


@pytest.mark.parametrize("field", ["at", "expiry"])
@pytest.mark.parametrize("t", NON_FINITE, ids=NON_FINITE_IDS)
def test_max_validity_fails_closed_on_a_non_finite_time(field: str, t: float) -> None:
    request = DischargeRequest(flyio=[FlyioIdentity(7)], expiry=T0 + 60, at=T0)
    assert MaxValidity(300).prohibits(request) is None
    # A request that bypassed its own checks (or a subclass) still fails closed.
    object.__setattr__(request, field, t)
    err = MaxValidity(300).prohibits(request)
    assert isinstance(err, InvalidAccessError)
    assert "must be a finite number" in str(err)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ValidityWindow(math.nan, T0),
        lambda: ValidityWindow(0, math.inf),
        lambda: ValidityWindow(0, T0 + 0.5),
        lambda: ValidityWindow(0, 2**63),
        lambda: ValidityWindow(True, T0),
        lambda: MaxValidity(math.nan),
        lambda: MaxValidity(math.inf),
        lambda: MaxValidity(60.0),
        lambda: MaxValidity(-1),
    ],
    ids=[
        "vw-nan",
        "vw-inf",
        "vw-float",
        "vw-int64",
        "vw-bool",
        "mv-nan",
        "mv-inf",
        "mv-float",
        "mv-neg",
    ],
)
def test_time_caveats_hold_only_integers(make: object) -> None:
    # A float field encoded as a MessagePack float that Go cannot read, and a
    # NaN bound compared false, so it passed.
    with pytest.raises(DecodeError, match="must be an int from"):
        make()  # type: ignore[operator]


# -- item 12: action letters are known ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "bad"),
    [
        ('{"type":"Organization","body":{"id":1,"mask":"read"}}', "e"),
        ('{"type":"Apps","body":{"apps":{"42":"write"}}}', "i"),
        ('{"type":"Action","body":"rw "}', " "),
        ('{"type":"IfPresent","body":{"ifs":[],"else":"rX"}}', "X"),
        ('{"type":"Machines","body":{"machines":{"m1":"*r"}}}', "*"),
    ],
    ids=["org-mask", "apps", "action", "if-present-else", "star-with-letters"],
)
def test_unknown_action_letters_in_caveat_json_are_refused(body: str, bad: str) -> None:
    # Go ignores unknown letters: "read" is read+delete there, "write" read+write.
    with pytest.raises(DecodeError, match=f"unknown action letter {bad!r}.*rwcdC"):
        CaveatSet.from_json(f"[{body}]")


def test_unknown_action_letters_in_access_json_are_refused() -> None:
    with pytest.raises(DecodeError, match=r"access action: unknown action letter 'e'.*rwcdC"):
        FlyAccess.from_json('{"orgid":1,"action":"read"}', now=T0)
    assert FlyAccess.from_json('{"orgid":1,"action":"rd"}', now=T0).action == 0x09


@pytest.fixture
def key_and_header(tmp_path: Path) -> tuple[str, str]:
    key = os.urandom(32)
    key_file = tmp_path / "key"
    key_file.write_text(key.hex())
    token = Macaroon.new(b"kid", LOC, key)
    token.add(Organization(1, Action.ALL))
    return str(key_file), to_header(token)


def test_the_cli_refuses_unknown_action_letters(
    key_and_header: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file, header = key_and_header
    caveats = tmp_path / "caveats.json"
    caveats.write_text('[{"type":"Organization","body":{"id":1,"mask":"read"}}]')
    assert main(["attenuate", header, "-f", str(caveats), "--location", LOC]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown action letter 'e'" in err
    argv = ["verify", header, "--key-file", key_file, "--access", '{"orgid":1,"action":"write"}']
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown action letter 'i'" in err


# -- item 6: exceptions stay in the error tree -------------------------------------------------


DEEP = [
    "[" * 100_000,  # the review's input, never closed
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 100_000 + "1" + "}" * 100_000,
    "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
]


@pytest.mark.parametrize("text", DEEP, ids=["review", "arrays", "objects", "over-limit"])
def test_deep_json_is_a_decode_error(text: str) -> None:
    for parse in (
        lambda t: FlyAccess.from_json(t, now=T0),
        Nonce.from_json,
        CaveatSet.from_json,
    ):
        with pytest.raises(DecodeError, match="nested"):
            parse(text)
        with pytest.raises(DecodeError, match="nested"):
            parse(text.encode())


def test_json_nesting_up_to_the_limit_is_read() -> None:
    body = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    (cav,) = CaveatSet.from_json(f'[{{"type":"99999","body":{body}}}]')
    assert isinstance(cav, UnregisteredCaveat) and cav.type_number == 99999
    # The deepest IfPresent nesting decoding allows fits well within the limit.
    inner: ActionCaveat | IfPresent = ActionCaveat(Action.READ)
    for _ in range(MAX_NESTING):
        inner = IfPresent((Apps({1: Action.READ}), inner), Action.READ)
    cs = CaveatSet([inner])
    assert CaveatSet.from_json(cs.to_json()) == cs


@pytest.mark.parametrize(
    "body", ["NaN", "Infinity", "-Infinity", "1e400", '{"x":[NaN]}'], ids=str.lower
)
def test_json_constants_go_refuses_are_decode_errors(body: str) -> None:
    # They were kept in an unregistered caveat, whose JSON then said NaN: not JSON.
    with pytest.raises(DecodeError, match="not valid JSON"):
        CaveatSet.from_json(f'[{{"type":"99999","body":{body}}}]')
    with pytest.raises(DecodeError):
        FlyAccess.from_json(f'{{"orgid":{body}}}', now=T0)


def _google_user_id_set(body: bytes) -> bytes:
    return b"\x92\x19" + msgpack.packb(body, use_bin_type=True)


def test_huge_google_user_ids_are_decode_errors() -> None:
    # 2,000 bytes is about 4,800 digits: repr, to_json and inspect raised ValueError.
    huge = _google_user_id_set(b"\x01" + bytes(1999))
    with pytest.raises(DecodeError, match="GoogleUserID must be an int from 0 to 10\\*\\*255-1"):
        CaveatSet.decode(huge)
    with pytest.raises(DecodeError, match="GoogleUserID"):
        CaveatSet.from_json('[{"type":"GoogleUserID","body":1' + "0" * 300 + "}]")
    with pytest.raises(DecodeError, match="GoogleUserID"):
        GoogleUserID(10**255)
    # The largest allowed id prints, both ways, and survives a round trip.
    top = GoogleUserID(10**255 - 1)
    assert repr(top) == f"GoogleUserID(id={'9' * 255})"
    cs = CaveatSet([top])
    assert CaveatSet.decode(cs.encode()) == cs
    assert CaveatSet.from_json(cs.to_json()) == cs


def test_huge_numbers_in_caveat_json_are_not_value_errors() -> None:
    digits = "9" * 5000
    # A type that is not a uint64 is an unregistered type, as in Go.
    (cav,) = CaveatSet.from_json(f'[{{"type":"{digits}","body":null}}]')
    assert isinstance(cav, UnregisteredCaveat) and cav.type_number == UNREGISTERED_TYPE
    # Leading zeros are fine (Go's ParseUint takes them).
    (cav,) = CaveatSet.from_json(f'[{{"type":"{"0" * 30}4","body":null}}]')
    assert cav == ValidityWindow(0, 0)
    with pytest.raises(DecodeError, match="ids must be unsigned integers below 2\\*\\*64"):
        CaveatSet.from_json(f'[{{"type":"Apps","body":{{"apps":{{"{digits}":"r"}}}}}}]')
    (cav,) = CaveatSet.from_json(f'[{{"type":"Apps","body":{{"apps":{{"{"0" * 30}7":"r"}}}}}}]')
    assert cav == Apps({7: Action.READ})


# -- strings that are not UTF-8 ----------------------------------------------------------------


def _machines_with_raw_key(raw: bytes) -> CaveatSet:
    data = b"\x92\x07\x91\x81" + msgpack.packb(raw, use_bin_type=False) + b"\x01"
    return CaveatSet.decode(data)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"\xff\xfe", "\\ufffd\\ufffd"),
        (b"m\x80n", "m\\ufffdn"),
        (b"\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd"),  # an encoded surrogate: three bad bytes
        (b"\xe2\x82", "\\ufffd\\ufffd"),  # a truncated sequence: one each, as Go
        ("é".encode(), "é"),
    ],
)
def test_json_of_non_utf8_strings_is_what_go_writes(raw: bytes, shown: str) -> None:
    cs = _machines_with_raw_key(raw)
    text = cs.to_json()
    assert text == f'[{{"type":"Machines","body":{{"machines":{{"{shown}":"r"}}}}}}]'
    text.encode("utf-8")  # raised UnicodeEncodeError: lone surrogates
    source = FromMachineSource(raw.decode("utf-8", "surrogateescape"))
    assert (
        CaveatSet([source]).to_json()
        == f'[{{"type":"FromMachineSource","body":{{"id":"{shown}"}}}}]'
    )
    # Lossy: reading it back gives U+FFFD, never the bytes.
    again = CaveatSet.from_json(text)
    if raw.isascii() or raw == "é".encode():
        assert again == cs
    else:
        (machines,) = again
        assert isinstance(machines, Machines) and machines.machines is not None
        assert "\ufffd" in machines.machines.keys()[0]
        assert again.encode() != cs.encode()


def test_json_object_keys_are_sorted_by_their_bytes_as_go_does() -> None:
    data = b"\x92\x07\x91\x82\xa1\x80\x01\xa2\xc3\xa9\x02"  # {"\x80": r, "é": w}
    cs = CaveatSet.decode(data)
    assert cs.to_json() == '[{"type":"Machines","body":{"machines":{"\\ufffd":"r","é":"w"}}}]'


@pytest.mark.parametrize(
    "text",
    [
        '[{"type":"Machines","body":{"machines":{"\\udc80":"r"}}}]',
        '[{"type":"Machines","body":{"machines":{"\\ud800":"r"}}}]',
        b'[{"type":"Machines","body":{"machines":{"\xff":"r"}}}]',
        b'[{"type":"Machines","body":{"machines":{"\xed\xb2\x80":"r"}}}]',
    ],
    ids=["low-surrogate-escape", "high-surrogate-escape", "invalid-byte", "encoded-surrogate"],
)
def test_json_strings_are_read_as_go_reads_them(text: str | bytes) -> None:
    # Go's decoder reads lone surrogates and invalid bytes as U+FFFD. Here a
    # "\udc80" escape stood for the raw byte 0x80, and "\ud800" could not be
    # encoded at all (UnicodeEncodeError from add() and encode()).
    cs = CaveatSet.from_json(text)
    assert cs.encode() == CaveatSet(
        [Machines({"\ufffd": Action.READ})]
    ).encode() or cs.encode() == (CaveatSet([Machines({"\ufffd" * 3: Action.READ})]).encode())
    key = os.urandom(32)
    token = Macaroon.new(b"kid", LOC, key)
    token.add(*cs)
    Macaroon.decode(token.encode()).verify(key)


def test_access_json_strings_are_read_as_go_reads_them() -> None:
    access = FlyAccess.from_json(
        '{"orgid":1,"appid":2,"machine":"\\udc80","command":["\\ud800"]}', now=T0
    )
    assert access.machine == "\ufffd" and access.command == ("\ufffd",)
    # The access no longer names the machine whose id is the raw byte 0x80.
    raw_machine = _machines_with_raw_key(b"\x80")
    with pytest.raises(UnauthorizedError, match="unauthorized for machine"):
        raw_machine.validate(attrs.evolve(access, command=None, action=Action.READ))
