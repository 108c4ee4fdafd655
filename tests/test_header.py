"""Token strings and ``Authorization`` headers (spec section 5)."""

from __future__ import annotations

import base64
import binascii
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macaroons_authz import (
    MAX_HEADER_LENGTH,
    MAX_HEADER_TOKENS,
    ActionCaveat,
    BindToParentToken,
    CaveatSet,
    DecodeError,
    Macaroon,
    Nonce,
    decode_token,
    discharge_ticket,
    encode_token,
    parse_header,
    parse_permission_and_discharge_tokens,
    to_header,
)
from macaroons_authz._gojson import unb64
from macaroons_authz.caveats._base import json_blob
from macaroons_authz.header import strip_scheme

LOC = "https://api.example/v1"
TP = "https://auth.example"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def root() -> bytes:
    m = Macaroon.new(b"kid", LOC, os.urandom(32))
    m.add(ActionCaveat(1))
    return m.encode()


@pytest.fixture(scope="module")
def discharge() -> bytes:
    key, tp_key = os.urandom(32), os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add_3p(tp_key, TP)
    (ticket,) = m.third_party_tickets()[TP]
    _, dm = discharge_ticket(tp_key, TP, ticket)
    return dm.encode()


# -- encoding --------------------------------------------------------------------


def test_encode_token_is_fm2_and_padded_standard_base64(root: bytes) -> None:
    m = Macaroon.decode(root)
    assert encode_token(m) == encode_token(root) == "fm2_" + _b64(root)
    assert encode_token(b"\xfb\xff") == "fm2_+/8="  # the standard alphabet, with padding
    with pytest.raises(TypeError):
        encode_token("fm2_abc")  # type: ignore[arg-type]


def test_to_header_joins_with_commas_and_no_spaces(root: bytes, discharge: bytes) -> None:
    header = to_header(Macaroon.decode(root), discharge)
    assert header == f"FlyV1 fm2_{_b64(root)},fm2_{_b64(discharge)}"
    assert to_header(encode_token(root), "fo1_opaque") == f"FlyV1 fm2_{_b64(root)},fo1_opaque"
    assert parse_header(header) == [root, discharge]


def test_to_header_refuses_no_tokens_and_token_strings_with_commas_or_spaces() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        to_header()
    for bad in ("", "fm2_a,fm2_b", " fm2_a", "fm2_a ", "fm2 _a"):
        with pytest.raises(DecodeError, match="commas or spaces"):
            to_header(bad)


def test_decode_token_inverts_encode_token(root: bytes) -> None:
    assert decode_token(encode_token(root)) == root


# -- scheme stripping -----------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "FlyV1 ",
        "flyv1 ",
        "FLYV1 ",
        "Bearer ",
        "bearer ",
        "BEARER ",
        "Bearer FlyV1 ",
        "FlyV1 Bearer ",
        "Bearer Bearer FlyV1 ",
        "  FlyV1   ",
        "\tBearer  FlyV1 ",
    ],
)
def test_scheme_is_stripped_case_insensitively_and_repeatedly(
    prefix: str, root: bytes, discharge: bytes
) -> None:
    tokens = f"fm2_{_b64(root)},fm2_{_b64(discharge)}"
    assert parse_header(prefix + tokens + "  ") == [root, discharge]


@pytest.mark.parametrize(
    "prefix",
    ["Basic ", "FlyV2 ", "FlyV1x ", "Token ", "FlyV1,", "Bearer,"],
)
def test_other_schemes_are_not_stripped(prefix: str, root: bytes) -> None:
    with pytest.raises(DecodeError, match="bad token"):
        parse_header(prefix + encode_token(root))


def test_outer_space_is_what_go_trims_space() -> None:
    # Go's strings.TrimSpace trims Unicode White_Space; Python's str.strip()
    # would also trim the information separators U+001C to U+001F.
    every = "".join(map(chr, range(0x3001)))
    go_space = {c for c in every if c.isspace()} - set("\x1c\x1d\x1e\x1f")
    assert strip_scheme("".join(sorted(go_space)) + "x" + "\u3000\x85") == "x"
    for sep in "\x1c\x1d\x1e\x1f":
        assert strip_scheme(f"FlyV1 fm2_x{sep}") == f"fm2_x{sep}"
        assert strip_scheme(f"{sep}FlyV1 fm2_x") == f"{sep}FlyV1 fm2_x"


def test_bare_scheme_is_not_a_token() -> None:
    for header in ("FlyV1", "FlyV1 ", "Bearer", " bearer  "):
        with pytest.raises(DecodeError, match="no label"):
            parse_header(header)


# -- splitting and labels --------------------------------------------------------------


def test_header_and_bare_comma_list_parse_alike(root: bytes, discharge: bytes) -> None:
    bare = f"{encode_token(root)},{encode_token(discharge)}"
    assert parse_header(bare) == parse_header("FlyV1 " + bare) == [root, discharge]
    assert parse_header(encode_token(root)) == [root]


def test_pieces_are_not_trimmed(root: bytes, discharge: bytes) -> None:
    a, b = encode_token(root), encode_token(discharge)
    for header in (f"{a}, {b}", f"{a} ,{b}", f"FlyV1 {a}, {b}", f"{a},{b},", f"{a},,{b}"):
        with pytest.raises(DecodeError, match="bad token"):
            parse_header(header)


def test_legacy_labels_decode_identically(root: bytes) -> None:
    payload = _b64(root)
    for label in ("fm2", "fm1r", "fm1a"):
        assert decode_token(f"{label}_{payload}") == root
        assert parse_header(f"FlyV1 {label}_{payload}") == [root]
    assert parse_header(f"fm1a_{payload},fm1r_{payload},fm2_{payload}") == [root] * 3


def test_oauth_tokens_are_skipped_by_parse_but_not_decoded(root: bytes) -> None:
    assert parse_header(f"FlyV1 fo1_whatever,{encode_token(root)},fo1_") == [root]
    with pytest.raises(DecodeError, match="invalid token prefix"):
        decode_token("fo1_whatever")


@pytest.mark.parametrize("label", ["fm3", "FM2", "fm1", "fm1x", "fo2", "fm2 ", "", "x"])
def test_other_labels_are_refused(label: str, root: bytes) -> None:
    token = f"{label}_{_b64(root)}"
    with pytest.raises(DecodeError, match="invalid token prefix"):
        decode_token(token)
    with pytest.raises(DecodeError, match="invalid token prefix"):
        parse_header(f"FlyV1 {encode_token(root)},{token}")


def test_piece_without_underscore_is_refused(root: bytes) -> None:
    for token in ("fm2", _b64(root), "fm2" + _b64(root).replace("_", "")):
        with pytest.raises(DecodeError, match="no label"):
            decode_token(token)
    with pytest.raises(DecodeError, match="no label"):
        parse_header(f"{encode_token(root)},fm2")


def test_label_ends_at_the_first_underscore() -> None:
    with pytest.raises(DecodeError, match="invalid base64"):
        decode_token("fm2_QQ_=")
    with pytest.raises(DecodeError, match="invalid token prefix"):
        decode_token("fm_2_QQ==")


@pytest.mark.parametrize(
    "payload",
    [
        "f",
        "xxx",
        "QQ",
        "QQ=",
        "QQ===",
        "QQ==QQ==",
        "Q Q==",
        "Q\tQ==",
        "-_8=",  # URL-safe alphabet
        "!!!!",
        "QUJD\u00e9",
        # Padding after a full quantum: Python's strict mode takes it, Go does not.
        "QUJD=",
        "QUJD====",
        "QUJDRA===",
    ],
)
def test_bad_base64_is_a_decode_error(payload: str) -> None:
    with pytest.raises(DecodeError, match="invalid base64"):
        decode_token("fm2_" + payload)
    with pytest.raises(DecodeError, match="invalid base64"):
        parse_header("FlyV1 fm2_" + payload)


def test_line_breaks_inside_base64_are_tolerated_as_in_go(root: bytes) -> None:
    payload = _b64(root)
    broken = payload[:10] + "\r\n" + payload[10:30] + "\n" + payload[30:]
    assert decode_token("fm2_" + broken) == root


def test_empty_payload_is_a_decode_error() -> None:
    for token in ("fm2_", "fm1r_", "fm1a_"):
        with pytest.raises(DecodeError, match="empty"):
            decode_token(token)
    with pytest.raises(DecodeError, match="empty"):
        parse_header("FlyV1 fm2_")


def test_zero_tokens_is_a_decode_error() -> None:
    for header in ("FlyV1 fo1_a", "fo1_a,fo1_b", "Bearer fo1_"):
        with pytest.raises(DecodeError, match="no valid tokens found"):
            parse_header(header)
    for header in ("", "   ", ","):
        with pytest.raises(DecodeError, match="bad token"):
            parse_header(header)


def test_parse_does_not_require_the_payload_to_be_a_token() -> None:
    # Parsing is about strings; whether the bytes are a token is decided later.
    assert parse_header("fm2_AQID") == [b"\x01\x02\x03"]


# -- permission vs discharge -------------------------------------------------------------


def test_permission_and_discharges_are_split_by_location(root: bytes, discharge: bytes) -> None:
    for header in (to_header(root, discharge), to_header(discharge, root)):
        assert parse_permission_and_discharge_tokens(header, LOC) == (root, [discharge])
    # The label plays no part: a permission token labelled "auth" is still one.
    relabelled = f"fm1a_{_b64(root)},fm1r_{_b64(discharge)}"
    assert parse_permission_and_discharge_tokens(relabelled, LOC) == (root, [discharge])
    # Seen from the third party, the roles swap.
    assert parse_permission_and_discharge_tokens(to_header(root, discharge), TP) == (
        discharge,
        [root],
    )


def test_every_other_location_is_a_discharge_candidate(root: bytes, discharge: bytes) -> None:
    other = Macaroon.new(b"k", "https://elsewhere.example", os.urandom(32)).encode()
    header = to_header(other, root, discharge)
    assert parse_permission_and_discharge_tokens(header, LOC) == (root, [other, discharge])


def test_undecodable_tokens_are_dropped_from_the_split(root: bytes, discharge: bytes) -> None:
    header = f"FlyV1 fm2_AQID,{encode_token(root)},fo1_x,fm2_{_b64(b'garbage')}"
    assert parse_permission_and_discharge_tokens(header, LOC) == (root, [])


def test_no_permission_token(discharge: bytes) -> None:
    with pytest.raises(DecodeError, match="no permission token"):
        parse_permission_and_discharge_tokens(to_header(discharge), LOC)
    with pytest.raises(DecodeError, match="no permission token"):
        parse_permission_and_discharge_tokens("FlyV1 fm2_AQID", LOC)


def test_multiple_permission_tokens(root: bytes, discharge: bytes) -> None:
    another = Macaroon.new(b"kid", LOC, os.urandom(32)).encode()
    with pytest.raises(DecodeError, match="multiple permission tokens"):
        parse_permission_and_discharge_tokens(to_header(root, discharge, another), LOC)
    with pytest.raises(DecodeError, match="multiple permission tokens"):
        parse_permission_and_discharge_tokens(to_header(root, root), LOC)


def test_split_propagates_header_errors(root: bytes) -> None:
    with pytest.raises(DecodeError, match="invalid token prefix"):
        parse_permission_and_discharge_tokens(f"{encode_token(root)},xx_QQ==", LOC)


# -- limits and types ----------------------------------------------------------------------


def test_header_length_limit(root: bytes) -> None:
    token = encode_token(root)
    filler = MAX_HEADER_LENGTH - len(token) - len(",fo1_")
    exact = f"{token},fo1_{'a' * filler}"
    assert len(exact) == MAX_HEADER_LENGTH
    assert parse_header(exact) == [root]
    with pytest.raises(DecodeError, match="longer than"):
        parse_header(exact + "a")
    with pytest.raises(DecodeError, match="longer than"):
        parse_permission_and_discharge_tokens(exact + "a", LOC)


def test_header_token_count_limit(root: bytes) -> None:
    token = encode_token(root)
    assert parse_header(",".join([token] * MAX_HEADER_TOKENS)) == [root] * MAX_HEADER_TOKENS
    with pytest.raises(DecodeError, match=f"more than {MAX_HEADER_TOKENS} tokens"):
        parse_header(",".join([token] * (MAX_HEADER_TOKENS + 1)))
    with pytest.raises(DecodeError, match="more than"):
        parse_header(",".join(["fo1_x"] * (MAX_HEADER_TOKENS + 1)))


@pytest.mark.parametrize("value", [b"FlyV1 fm2_AQID", None, 123, ["fm2_AQID"], bytearray(b"x")])
def test_non_str_input_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError):
        parse_header(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        decode_token(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_permission_and_discharge_tokens(value, LOC)  # type: ignore[arg-type]


@given(st.binary(max_size=40), st.integers(min_value=1, max_value=4))
def test_only_the_exact_padded_form_decodes_as_in_go(data: bytes, extra: int) -> None:
    text = base64.b64encode(data).decode("ascii")
    assert unb64(text) == data
    with pytest.raises(binascii.Error):
        unb64(text + "=" * extra)


@pytest.mark.parametrize("brk", ["\n", "\r\n", "\r"])
def test_json_byte_fields_skip_line_breaks_as_go_does(brk: str) -> None:
    # Go's encoding/json decodes []byte with base64.StdEncoding, which skips
    # \r and \n anywhere in the text; other white space is still refused.
    assert json_blob(f"QU{brk}JD", "ticket") == b"ABC"
    assert json_blob(f"QUJD{brk}", "ticket") == b"ABC"
    with pytest.raises(DecodeError):
        json_blob("QU JD", "ticket")
    with pytest.raises(DecodeError):
        json_blob(f"QUJD={brk}", "ticket")
    nonce = Nonce(b"kid", b"r" * 16, False)
    text = nonce.to_json()
    assert Nonce.from_json(text[:6] + json.dumps(brk)[1:-1] + text[6:]) == nonce
    caveats = CaveatSet([BindToParentToken(b"x" * 16)])
    body = caveats.to_json().replace("eHh4", "eHh4" + json.dumps(brk)[1:-1], 1)
    assert CaveatSet.from_json(body) == caveats


def test_json_byte_fields_refuse_excess_padding_too() -> None:
    with pytest.raises(DecodeError):
        json_blob("QUJD=", "ticket")
    assert json_blob("QUJD", "ticket") == b"ABC"
    nonce = Nonce(b"kid", b"r" * 16, False)
    assert Nonce.from_json(nonce.to_json()) == nonce
    with pytest.raises(DecodeError):
        Nonce.from_json(nonce.to_json()[:-1] + '="')


def _outcome(parse: object, header: str) -> object:
    try:
        return parse(header)  # type: ignore[operator]
    except DecodeError as exc:
        return ("DecodeError", str(exc))


_AROUND = st.sampled_from(["", " ", "\t", "\n", "\r\n", "\u3000", "\x1f", ",", "=", "==", "_"])


@given(
    st.binary(min_size=0, max_size=48),
    _AROUND,
    _AROUND,
    st.integers(min_value=0, max_value=60),
    st.sampled_from(["FlyV1 fm2_", "FlyV1 fm2_fm2_", "FlyV1 fm2_ fm2_", "FlyV1 fm2_,"]),
)
def test_the_common_header_lane_reads_as_the_general_path(
    data: bytes, inside: str, after: str, at: int, start: str
) -> None:
    # parse_header reads "FlyV1 fm2_<base64>" in one step and leaves the rest
    # to _parse_pieces: both must give the same tokens or the same error.
    from macaroons_authz.header import _parse_pieces

    payload = _b64(data)
    at = min(at, len(payload))
    header = start + payload[:at] + inside + payload[at:] + after
    assert _outcome(parse_header, header) == _outcome(_parse_pieces, header)
