"""TokenSet (fly-go's tokens.Tokens): sorting, headers, unverified expiry, pruning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fly_helpers import KEY, NOW, OAUTH, ORG, fly_tokens

from macaroons_authz import (
    Action,
    DecodeError,
    IfPresent,
    ValidityWindow,
    encode_token,
    org_token,
    to_header,
)
from macaroons_authz.fly import (
    LOCATION_AUTHENTICATION,
    LOCATION_NEW_AUTHENTICATION,
    TokenSet,
    unverified_expiration,
)
from macaroons_authz.header import MAX_HEADER_TOKENS


def test_parse_sorts_macaroons_and_oauth_tokens() -> None:
    ts = TokenSet.parse(" Bearer FlyV1 fm2_a , fo1_b,fm1r_c,fm1a_d,,other ")
    assert ts.macaroons == ("fm2_a", "fm1r_c", "fm1a_d")
    assert ts.oauth == ("fo1_b", "other")
    assert not TokenSet.parse("")
    assert TokenSet.parse(" , ").macaroons == ()


def test_parse_refuses_oversized_input() -> None:
    with pytest.raises(DecodeError, match="more than"):
        TokenSet.parse(",".join(["fm2_a"] * (MAX_HEADER_TOKENS + 1)))


def test_headers_as_fly_go_makes_them() -> None:
    both = TokenSet.parse("fm2_a,fo1_b")
    assert both.header() == "FlyV1 fm2_a"  # FlapsHeader
    assert both.header(include_oauth=True) == "FlyV1 fm2_a,fo1_b"  # GraphQLHeader
    assert both.bearer_header() == "Bearer fm2_a"
    assert both.text() == "fm2_a,fo1_b"  # All
    assert both.text(include_oauth=False) == "fm2_a"  # Flaps
    oauth = TokenSet.parse("fo1_b")
    assert oauth.header() == "Bearer fo1_b"
    assert oauth.text(include_oauth=False) == "fo1_b"
    with pytest.raises(ValueError, match="no tokens"):
        TokenSet().header()
    with pytest.raises(ValueError, match="no tokens"):
        TokenSet().bearer_header()


def test_subsets_and_additions() -> None:
    ts = TokenSet.parse("fm2_a,fo1_b", from_file=Path("/x/config.yml"))
    assert ts.macaroons_only() == TokenSet(("fm2_a",), (), Path("/x/config.yml"))
    assert ts.oauth_only().oauth == ("fo1_b",)
    more = ts.with_tokens("FlyV1 fm2_c,fo1_d", "fm2_e")
    assert more.macaroons == ("fm2_a", "fm2_c", "fm2_e")
    assert more.oauth == ("fo1_b", "fo1_d")
    assert more.from_file == Path("/x/config.yml")


def test_repr_and_str_show_counts_never_tokens(caplog: pytest.LogCaptureFixture) -> None:
    tokens = fly_tokens()
    ts = TokenSet.parse(tokens.header, from_file=Path("/home/u/.fly/config.yml"))
    assert repr(ts) == "<TokenSet macaroons=2 oauth=1 from_file='/home/u/.fly/config.yml'>"
    assert str(ts) == repr(ts)
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("tokens: %s %r", ts, ts)
    assert "fm2_" not in caplog.text and OAUTH not in caplog.text


def test_unverified_expiration_reads_the_tokens_own_windows() -> None:
    token = org_token(KEY, ORG)
    assert unverified_expiration(token) is None
    token.add(ValidityWindow(NOW, NOW + 100), ValidityWindow(NOW, NOW + 50))
    assert unverified_expiration(token) == NOW + 50
    # As Go's Expiration (through GetCaveats), windows inside IfPresent count.
    token.add(IfPresent((ValidityWindow(NOW, NOW + 20),), Action.ALL))
    assert unverified_expiration(token) == NOW + 20
    tokens = fly_tokens(discharge_until=NOW + 30)
    ts = TokenSet.parse(tokens.header)
    assert ts.unverified_expiration() == NOW + 30  # the discharge's, the earliest
    assert TokenSet.parse("fm2_notatoken,fo1_x").unverified_expiration() is None


def test_prune_keeps_what_is_needed() -> None:
    tokens = fly_tokens()
    ts = TokenSet.parse(tokens.header)
    assert ts.prune(NOW) == ts


def test_prune_drops_undecodable_and_expired_macaroons() -> None:
    expired = org_token(KEY, ORG, expires_in=10, now=NOW - 100)
    ts = TokenSet.parse(to_header(encode_token(expired), "fm2_AAAA", "fo1_x"))
    assert ts.prune(NOW) == TokenSet((), ("fo1_x",))
    # Expired means past not_after, as Go's time.Now().After(Expiration()).
    edge = org_token(KEY, ORG, not_after=NOW, now=NOW - 100)
    assert TokenSet.parse(encode_token(edge)).prune(NOW).macaroons
    assert not TokenSet.parse(encode_token(edge)).prune(NOW + 1).macaroons


def test_prune_drops_discharges_no_permission_token_needs() -> None:
    tokens = fly_tokens(oauth=False)
    other = fly_tokens(oauth=False)
    stray = encode_token(other.discharge)
    ts = TokenSet.parse(tokens.header).with_tokens(stray)
    assert ts.prune(NOW).macaroons == TokenSet.parse(tokens.header).macaroons
    # A discharge whose permission token expired goes with it.
    lapsed = fly_tokens(oauth=False, extra=(ValidityWindow(NOW - 100, NOW - 10),))
    assert TokenSet.parse(lapsed.header).prune(NOW).macaroons == ()


@pytest.mark.parametrize("location", [LOCATION_AUTHENTICATION, LOCATION_NEW_AUTHENTICATION])
def test_prune_refreshes_auth_discharges_early(location: str) -> None:
    tokens = fly_tokens(auth_location=location, discharge_until=NOW + 30, oauth=False)
    ts = TokenSet.parse(tokens.header)
    # Within a minute of expiry (fly-go's default advance), the discharge goes.
    assert ts.prune(NOW - 31).macaroons == ts.macaroons
    assert ts.prune(NOW - 29).macaroons == ts.macaroons[:1]
    assert ts.prune(NOW, advance=20).macaroons == ts.macaroons
    assert ts.prune(NOW, advance=31).macaroons == ts.macaroons[:1]


def test_prune_keeps_other_discharges_until_they_expire() -> None:
    tokens = fly_tokens(auth_location="https://tp.example", discharge_until=NOW + 30, oauth=False)
    ts = TokenSet.parse(tokens.header)
    assert ts.prune(NOW).macaroons == ts.macaroons
    assert ts.prune(NOW + 31).macaroons == ts.macaroons[:1]


def test_bundle_of_the_macaroons() -> None:
    tokens = fly_tokens()
    bundle = TokenSet.parse(tokens.header).bundle()
    assert [t.text for t in bundle] == list(TokenSet.parse(tokens.header).macaroons)
    with pytest.raises(ValueError, match="no macaroons"):
        TokenSet.parse(OAUTH).bundle()
