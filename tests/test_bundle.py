"""Bundle: the tokens of one header (mirrors Go's bundle/bundle_test.go)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from macaroons_authz import (
    Action,
    AttenuationError,
    Bundle,
    BundleToken,
    Caveat,
    Caveat3P,
    CaveatSet,
    ConfineOrganization,
    DecodeError,
    FailedMacaroon,
    FlyAccess,
    FlyioUserID,
    Macaroon,
    MacaroonToken,
    MalformedMacaroon,
    MalformedTokensError,
    MemoryKeyring,
    NoAuthorizedTokensError,
    NonMacaroon,
    NoVerifiedTokensError,
    Organization,
    Predicate,
    UnauthorizedForActionError,
    UnverifiedMacaroon,
    ValidityWindow,
    VerificationError,
    VerifiedMacaroon,
    Verifier,
    allows_access,
    at_location,
    decode_token,
    discharge_ticket,
    encode_token,
    has_caveat,
    is_kind,
    new_encryption_key,
    new_signing_key,
)

PERM_LOC = "perm-loc"
PERM_KID = b"perm-kid"
PERM_KEY = new_signing_key()
TP_LOC = "tp-loc"
TP_KEY = new_encryption_key()
NOW = 1_700_000_000


def tokens(
    *,
    loc: str = PERM_LOC,
    key: bytes = PERM_KEY,
    kid: bytes = PERM_KID,
    caveats: Sequence[Caveat] = (),
    tps: Sequence[dict[str, object]] = (),
) -> list[str]:
    """A permission token and the discharges asked for, as token strings (Go's macOpts)."""
    mac = Macaroon.new(kid, loc, key)
    mac.add(*caveats)
    discharges = []
    for tp in tps:
        tp_loc = str(tp.get("loc", TP_LOC))
        before = mac.third_party_tickets().get(tp_loc, [])
        mac.add_3p(TP_KEY, tp_loc, *tp.get("tcavs", ()))  # type: ignore[arg-type]
        if tp.get("discharge"):
            (ticket,) = mac.third_party_tickets()[tp_loc][len(before) :]
            _, dm = discharge_ticket(TP_KEY, tp_loc, ticket)
            dm.add(*tp.get("dcavs", ()))  # type: ignore[arg-type]
            discharges.append(encode_token(dm))
    return [encode_token(mac), *discharges]


def joined(toks: Sequence[str]) -> str:
    return ",".join(toks)


def ring() -> MemoryKeyring:
    keys = MemoryKeyring()
    keys.add(PERM_KEY, PERM_KID)
    return keys


def texts(bundle: Bundle) -> list[str]:
    return [t.text for t in bundle]


def not_text(text: str) -> Predicate:
    return Predicate(lambda t: t.text != text)


# -- parsing -------------------------------------------------------------------


def test_empty_header_is_one_empty_non_macaroon() -> None:
    bundle = Bundle.parse("", PERM_LOC)
    assert bundle.header(scheme=False) == ""
    assert [type(t) for t in bundle] == [NonMacaroon]


def test_order_is_preserved() -> None:
    assert Bundle.parse("d,e,f,a,b,c", PERM_LOC).header(scheme=False) == "d,e,f,a,b,c"


def test_custom_filter_replaces_the_default() -> None:
    bundle = Bundle.parse("d,e,f,a,b,c", PERM_LOC, filter=not_text("f"))
    assert bundle.header(scheme=False) == "d,e,a,b,c"
    # A plain function is a predicate too.
    assert Bundle.parse("a,b", PERM_LOC, filter=lambda t: t.text == "b").header(scheme=False) == "b"


def test_scheme_is_stripped_and_pieces_trimmed() -> None:
    perm = tokens()[0]
    bundle = Bundle.parse(f"Bearer FlyV1  {perm} , fo1_x ", PERM_LOC)
    assert texts(bundle) == [perm, "fo1_x"]
    assert bundle.header() == f"FlyV1 {perm},fo1_x"
    assert Bundle(PERM_LOC).header() == ""
    # Trimmed as Go's strings.TrimSpace trims: a trailing U+001F stays.
    assert texts(Bundle.parse(f"{perm}\u3000, fo1_x\x1f", PERM_LOC)) == [perm, "fo1_x\x1f"]


def test_fo1_tokens_are_kept_verbatim() -> None:
    bundle = Bundle.parse("fo1_xxx", PERM_LOC)
    assert bundle.header(scheme=False) == "fo1_xxx"
    assert isinstance(bundle.tokens[0], NonMacaroon)


def test_malformed_tokens_are_reported_but_filtered() -> None:
    bundle = Bundle.parse("d,e,fm2_f,a,b,c", PERM_LOC)
    assert bundle.header(scheme=False) == "d,e,a,b,c"
    (bad,) = bundle.malformed
    assert bad.text == "fm2_f"
    assert isinstance(bad.error, DecodeError)
    with pytest.raises(MalformedTokensError, match="1 malformed") as info:
        Bundle.parse("d,e,fm2_f,a,b,c", PERM_LOC, strict=True)
    assert info.value.tokens == (bad,)
    assert "fm2_f" not in str(info.value)


def test_malformed_msgpack_is_malformed_too() -> None:
    junk = encode_token(b"\x94\x01")
    bundle = Bundle.parse(junk, PERM_LOC, filter=lambda t: True)
    assert isinstance(bundle.tokens[0], MalformedMacaroon)


def test_extraneous_discharges_are_filtered() -> None:
    toks = tokens(tps=[{"discharge": True}])
    extra = tokens(tps=[{"discharge": True}])
    bundle = Bundle.parse(joined([*toks, extra[1]]), PERM_LOC)
    assert bundle.header(scheme=False) == joined(toks)


def test_permission_tokens_of_other_locations_are_filtered() -> None:
    toks = tokens(tps=[{"discharge": True}])
    other = tokens(loc="bad-loc")
    bundle = Bundle.parse(joined([*toks, other[0]]), PERM_LOC)
    assert bundle.header(scheme=False) == joined(toks)


def test_header_size_limits_still_apply() -> None:
    with pytest.raises(DecodeError):
        Bundle.parse(",".join(["x"] * 300), PERM_LOC)


def test_reprs_show_no_token() -> None:
    toks = tokens(tps=[{"discharge": True}])
    bundle = Bundle.parse(joined([*toks, "fo1_secret", "fm2_f"]), PERM_LOC, filter=lambda t: True)
    text = repr(bundle) + repr(bundle.tokens) + str(bundle.tokens[0]) + repr(bundle.malformed)
    for secret in (*toks, "fo1_secret", "secret"):
        assert secret not in text


def test_str_and_logging_show_no_token(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 15 item 11: ``log.info("%s", bundle)`` printed every token."""
    toks = tokens(tps=[{"discharge": True}])
    bundle = Bundle.parse(joined([*toks, "fo1_secret"]), PERM_LOC)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("%s %s", bundle, f"{bundle}")
    assert str(bundle) == repr(bundle)
    for secret in (*toks, "fo1_secret"):
        assert secret not in caplog.text
    # The tokens are there for whoever asks for them by name.
    assert bundle.header() == "FlyV1 " + joined([*toks, "fo1_secret"])
    assert bundle.header(scheme=False) == joined([*toks, "fo1_secret"])


# -- adding --------------------------------------------------------------------


def test_add_tokens_is_all_or_nothing() -> None:
    t1, t2 = tokens(), tokens()
    bundle = Bundle.parse(joined(t1), PERM_LOC)
    with pytest.raises(MalformedTokensError):
        bundle.add_tokens(joined(t2) + ",fm2_xxx")
    assert bundle.header(scheme=False) == joined(t1)
    bundle.add_tokens(joined(t2))
    assert bundle.header(scheme=False) == joined([*t1, *t2])


def test_add_discharges_takes_macaroons_bytes_and_strings() -> None:
    mac = Macaroon.new(PERM_KID, PERM_LOC, PERM_KEY)
    mac.add_3p(TP_KEY, TP_LOC)
    bundle = Bundle.parse(encode_token(mac), PERM_LOC)
    (ticket,) = mac.third_party_tickets()[TP_LOC]
    _, d1 = discharge_ticket(TP_KEY, TP_LOC, ticket)
    _, d2 = discharge_ticket(TP_KEY, TP_LOC, ticket)
    _, d3 = discharge_ticket(TP_KEY, TP_LOC, ticket)
    added = bundle.add_discharges(d1, d2.encode(), encode_token(d3))
    assert [type(t) for t in added] == [UnverifiedMacaroon] * 3
    assert len(bundle) == 4
    with pytest.raises(DecodeError, match="not a macaroon"):
        bundle.add_discharges(encode_token(d1), "fo1_x")
    with pytest.raises(MalformedTokensError):
        bundle.add_discharges("fm2_f")
    assert len(bundle) == 4


# -- selecting -----------------------------------------------------------------


def test_select_does_not_modify_the_bundle_and_filter_does() -> None:
    bundle = Bundle.parse("a,b,c", PERM_LOC)
    assert bundle.select(not_text("b")).header(scheme=False) == "a,c"
    assert bundle.header(scheme=False) == "a,b,c"
    bundle.filter(not_text("b"))
    assert bundle.header(scheme=False) == "a,c"


def test_predicates_by_kind_location_and_caveat() -> None:
    toks = tokens(caveats=[Organization(7, Action.READ)], tps=[{"discharge": True}])
    plain = tokens()
    bundle = Bundle.parse(joined([*toks, "fo1_x", *plain]), PERM_LOC)
    assert texts(bundle.select(is_kind(NonMacaroon))) == ["fo1_x"]
    assert texts(bundle.select(at_location(TP_LOC))) == [toks[1]]
    assert texts(bundle.select(has_caveat(Organization))) == [toks[0]]
    assert texts(bundle.select(has_caveat(Caveat3P))) == [toks[0]]
    combined = is_kind(MacaroonToken) & ~at_location(TP_LOC)
    assert texts(bundle.select(combined)) == [toks[0], plain[0]]
    assert texts(bundle.select(is_kind(NonMacaroon) | at_location(TP_LOC))) == [toks[1], "fo1_x"]
    assert bundle.permission_tokens() == [bundle.tokens[0], bundle.tokens[3]]


@pytest.mark.parametrize(
    ("tps", "missing_tp", "missing_bogus"),
    [
        ([{}], 1, 0),  # no discharges
        ([], 0, 0),  # no third-party caveat
        ([{"discharge": True}], 0, 0),  # with a discharge
    ],
)
def test_missing_discharge(
    tps: list[dict[str, object]], missing_tp: int, missing_bogus: int
) -> None:
    bundle = Bundle.parse(joined(tokens(tps=tps)), PERM_LOC)
    assert len(bundle.select(bundle.missing_discharge(TP_LOC))) == missing_tp
    assert len(bundle.select(bundle.missing_discharge("bogus"))) == missing_bogus


@pytest.mark.parametrize(
    ("tps", "extra"),
    [([{}], False), ([], False), ([{"discharge": True}], False), ([{"discharge": True}], True)],
)
def test_with_discharges(tps: list[dict[str, object]], extra: bool) -> None:
    toks = tokens(tps=tps)
    header = toks
    if extra:
        header = [*toks, tokens(tps=[{"discharge": True}])[1]]
    bundle = Bundle.parse(joined(header), PERM_LOC, filter=lambda t: True)
    perm = Predicate(lambda t: t.text == toks[0])
    assert bundle.select(bundle.with_discharges(perm)).header(scheme=False) == joined(toks)
    assert bundle.select(bundle.with_discharges(lambda t: False)).header(scheme=False) == ""


def test_undischarged_tickets() -> None:
    t1 = tokens(tps=[{"discharge": True}])
    t2 = tokens(tps=[{"loc": "undischarged"}])
    bundle = Bundle.parse(joined([*t1, *t2]), PERM_LOC)
    tickets = bundle.undischarged_tickets()
    assert list(tickets) == ["undischarged"]
    assert len(tickets["undischarged"]) == 1


# -- verifying and validating --------------------------------------------------


def test_verify_matches_each_permission_token_with_its_own_discharges() -> None:
    t1 = tokens(tps=[{"discharge": True}])
    t2 = tokens(tps=[{"discharge": True}])
    extra = tokens(tps=[{"discharge": True}])
    bundle = Bundle.parse(joined([*t1, *t2, extra[1]]), PERM_LOC)
    verified = bundle.verify(ring())
    assert [t.text for t in verified] == [t1[0], t2[0]]
    assert all(isinstance(t, VerifiedMacaroon) for t in verified)
    # Discharges stay unverified; order is unchanged.
    assert [type(t) for t in bundle] == [
        VerifiedMacaroon,
        UnverifiedMacaroon,
        VerifiedMacaroon,
        UnverifiedMacaroon,
    ]
    assert bundle.header(scheme=False) == joined([*t1, *t2])


def test_verify_reports_partial_success() -> None:
    good = tokens(tps=[{"discharge": True}])
    unknown_kid = tokens(kid=b"other-kid", key=new_signing_key())
    undischarged = tokens(tps=[{}])
    bundle = Bundle.parse(joined([*good, *unknown_kid, *undischarged]), PERM_LOC)
    verified = bundle.verify(ring())
    assert [t.text for t in verified] == [good[0]]
    failed = bundle.failed
    assert [f.text for f in failed] == [unknown_kid[0], undischarged[0]]
    assert "unknown KID" in str(failed[0].error)
    assert "no matching discharge" in str(failed[1].error)


def test_verify_with_none_verified_raises_with_every_failure() -> None:
    bundle = Bundle.parse(joined(tokens(tps=[{}]) + tokens(tps=[{}])), PERM_LOC)
    with pytest.raises(NoVerifiedTokensError, match="no verified tokens") as info:
        bundle.verify(ring())
    assert len(info.value.failures) == 2
    assert isinstance(info.value, VerificationError)
    assert len(bundle.select(is_kind(FailedMacaroon))) == 2
    with pytest.raises(NoVerifiedTokensError):
        Bundle.parse("fo1_x", PERM_LOC).verify(ring())


def test_verify_with_a_verifier_uses_its_keys_and_trusted_third_parties() -> None:
    header = joined(tokens(tps=[{"discharge": True, "dcavs": [FlyioUserID(5)]}]))
    trusting = Verifier(ring(), location=PERM_LOC, trusted_3ps={TP_LOC: [TP_KEY]})
    (vm,) = Bundle.parse(header, PERM_LOC).verify(trusting)
    assert list(vm.caveats) == [FlyioUserID(5)]
    (vm,) = Bundle.parse(header, PERM_LOC).verify(ring())
    assert list(vm.caveats) == []
    (vm,) = Bundle.parse(header, PERM_LOC).verify(ring(), trusted_3ps={TP_LOC: [TP_KEY]})
    assert list(vm.caveats) == [FlyioUserID(5)]
    with pytest.raises(TypeError):
        Bundle.parse(header, PERM_LOC).verify(trusting, trusted_3ps={})
    with pytest.raises(ValueError, match="another location"):
        Bundle.parse(header, PERM_LOC).verify(Verifier(ring()))


def test_verify_with_a_verifier_honours_its_revocations() -> None:
    from macaroons_authz import MemoryRevocationStore, token_id

    revoked, kept = tokens(), tokens()
    store = MemoryRevocationStore()
    store.revoke(token_id(Macaroon.decode(decode_token(revoked[0]))))
    verifier = Verifier(ring(), location=PERM_LOC, revocations=store)
    bundle = Bundle.parse(joined(revoked + kept), PERM_LOC)
    assert [t.text for t in bundle.verify(verifier)] == kept
    assert "revoked" in str(bundle.failed[0].error)


def read(org: int, action: int = Action.READ) -> FlyAccess:
    return FlyAccess(org_id=org, action=action, at=NOW)


def test_validate_first_token_allowing_every_access_wins() -> None:
    reader = tokens(caveats=[Organization(1, Action.READ)])
    writer = tokens(caveats=[Organization(1, Action.READ | Action.WRITE)])
    bundle = Bundle.parse(joined([*reader, *writer]), PERM_LOC)
    bundle.verify(ring())
    assert bundle.validate(read(1)).text == reader[0]
    assert bundle.validate(read(1), read(1, Action.WRITE)).text == writer[0]
    assert len(bundle.select(allows_access(read(1, Action.WRITE)))) == 1
    with pytest.raises(NoAuthorizedTokensError, match="no authorized tokens") as info:
        bundle.validate(read(1, Action.DELETE))
    assert len(info.value.reasons) == 2
    assert info.value.contains(UnauthorizedForActionError)
    assert str(info.value).count("token ") == 2


def test_validate_without_verified_tokens_fails() -> None:
    bundle = Bundle.parse(joined(tokens()), PERM_LOC)
    with pytest.raises(NoAuthorizedTokensError) as info:
        bundle.validate(read(1))
    assert info.value.reasons == ()


def test_verified_expiry() -> None:
    bundle = Bundle.parse(
        joined(tokens(caveats=[ValidityWindow(1, 50), ValidityWindow(0, 9)])), PERM_LOC
    )
    (vm,) = bundle.verify(ring())
    assert vm.expires_at == 9
    assert vm.expiration() is not None and vm.expiration().timestamp() == 9  # type: ignore[union-attr]


# -- discharging and attenuating -----------------------------------------------


def test_discharge_with_a_callback() -> None:
    cav1 = ValidityWindow(1, NOW + 3600)
    cav2 = ValidityWindow(2, NOW + 3600)
    bundle = Bundle.parse(joined(tokens(tps=[{"tcavs": [cav1]}])), PERM_LOC)
    seen: list[CaveatSet] = []

    def callback(caveats: CaveatSet) -> list[Caveat]:
        seen.append(caveats)
        return [cav2]

    (added,) = bundle.discharge(TP_LOC, TP_KEY, callback)
    assert list(seen[0]) == [cav1]
    assert added.text.startswith("fm2_")
    assert added.macaroon.is_proof
    assert bundle.undischarged_tickets() == {}
    (vm,) = bundle.verify(ring())
    assert cav2 in vm.caveats


def test_discharge_is_all_or_nothing() -> None:
    other_key = new_encryption_key()
    mac = Macaroon.new(PERM_KID, PERM_LOC, PERM_KEY)
    mac.add_3p(TP_KEY, TP_LOC)
    mac.add_3p(other_key, "other-tp")
    bundle = Bundle.parse(encode_token(mac), PERM_LOC)
    # Every undischarged ticket is opened with the key: the other one fails.
    with pytest.raises(VerificationError):
        bundle.discharge(TP_LOC, TP_KEY, lambda caveats: [])
    assert len(bundle) == 1

    def refuse(caveats: CaveatSet) -> list[Caveat]:
        raise PermissionError("no")

    single = Bundle.parse(joined(tokens(tps=[{}])), PERM_LOC)
    with pytest.raises(PermissionError):
        single.discharge(TP_LOC, TP_KEY, refuse)
    assert len(single) == 1


def test_attenuate_only_permission_tokens() -> None:
    toks = tokens(tps=[{"discharge": True}])
    bundle = Bundle.parse(joined(toks), PERM_LOC)
    bundle.verify(ring())
    bundle.add_tokens(joined(tokens()))
    cav = ValidityWindow(1, 2)
    bundle.attenuate(cav)
    first, discharge, unverified = bundle.tokens
    assert isinstance(first, VerifiedMacaroon) and cav in first.caveats
    assert cav in first.unsafe_caveats
    assert isinstance(discharge, UnverifiedMacaroon) and cav not in discharge.unsafe_caveats
    assert discharge.text == toks[1]
    assert isinstance(unverified, UnverifiedMacaroon) and cav in unverified.unsafe_caveats
    # The new strings are the attenuated tokens, and they still verify.
    assert first.text != toks[0]
    fresh = Bundle.parse(bundle.header(scheme=False), PERM_LOC)
    assert len(fresh.verify(ring())) == 2


def test_attenuate_drops_duplicates_from_verified_caveats() -> None:
    cav = Organization(1, Action.READ)
    bundle = Bundle.parse(joined(tokens(caveats=[cav])), PERM_LOC)
    bundle.verify(ring())
    bundle.attenuate(cav)
    (vm,) = bundle.select(is_kind(VerifiedMacaroon))
    assert isinstance(vm, VerifiedMacaroon)
    assert list(vm.caveats) == [cav]


def test_attenuate_is_all_or_nothing() -> None:
    mac = Macaroon.new(PERM_KID, PERM_LOC, PERM_KEY)
    mac.add_3p(TP_KEY, TP_LOC)
    plain = tokens()
    bundle = Bundle.parse(joined([*plain, encode_token(mac)]), PERM_LOC)
    before = bundle.header(scheme=False)
    # The second token already has a 3P caveat for TP_LOC: the call fails for
    # it, and the first is not changed either.
    with pytest.raises(AttenuationError):
        bundle.attenuate(Caveat3P.new(TP_KEY, TP_LOC))
    assert bundle.header(scheme=False) == before


def test_attenuate_with_one_third_party_caveat_shares_the_ticket() -> None:
    bundle = Bundle.parse(joined(tokens() + tokens()), PERM_LOC)
    bundle.verify(ring())
    bundle.attenuate(Caveat3P.new(TP_KEY, TP_LOC, ConfineOrganization(1)))
    first, second = bundle.permission_tokens()
    # Gaining a 3P caveat makes a verified token unverified again.
    assert isinstance(first, UnverifiedMacaroon) and isinstance(second, UnverifiedMacaroon)
    (c1,) = first.unsafe_caveats.of_type(Caveat3P)
    (c2,) = second.unsafe_caveats.of_type(Caveat3P)
    assert c1.ticket == c2.ticket
    assert c1.verifier_key != c2.verifier_key
    assert bundle.undischarged_tickets() == {TP_LOC: [c1.ticket]}
    (added,) = bundle.discharge(TP_LOC, TP_KEY, lambda caveats: [])
    assert len(bundle.verify(ring())) == 2
    assert added in bundle.tokens


def test_bundle_tokens_are_values() -> None:
    token: BundleToken = NonMacaroon("fo1_x")
    assert token == NonMacaroon("fo1_x")
    with pytest.raises(AttributeError):
        token.text = "other"  # type: ignore[misc]
