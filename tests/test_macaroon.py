"""Minting, attenuation and verification (spec sections 3, 4 and 6).

Tokens that must *not* verify are built by hand here (plain ``msgpack`` and
``hmac``, not the library), so the library cannot agree with itself by
accident.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence

import attrs
import msgpack
import pytest

from macaroons_authz import (
    Action,
    ActionCaveat,
    Apps,
    AttenuationError,
    BindToParentToken,
    Caveat,
    Caveat3P,
    CaveatSet,
    ConfineOrganization,
    DecodeError,
    FlyioUserID,
    GitHubUserID,
    GoogleUserID,
    IfPresent,
    Macaroon,
    Nonce,
    Organization,
    UnauthorizedError,
    ValidityWindow,
    VerificationError,
    discharge_ticket,
    encode_token,
    to_header,
)
from macaroons_authz.macaroon import _BindingIds, _Run

LOC = "https://api.example/v1"
TP = "https://auth.example"
NOW = 1_700_000_000
FINALIZATION_KEY = b"proof-signature-finalization"


# -- an independent, minimal implementation of the chain ---------------------


def _h(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


def _pack(obj: object) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _chain(key: bytes, nonce: bytes, packed: Sequence[bytes], *, proof: bool) -> bytes:
    cur = _h(key, nonce)
    for p in packed:
        cur = _h(cur, p)
    return _h(FINALIZATION_KEY, cur) if proof else cur


def _envelope(nonce: bytes, location: str, packed: Sequence[bytes], tail: bytes) -> bytes:
    """Token bytes from a nonce, one-caveat encodings (``92 t b``) and a tail."""
    n = 2 * len(packed)
    header = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    return (
        b"\x94" + nonce + _pack(location) + header + b"".join(p[1:] for p in packed) + _pack(tail)
    )


def _forge(
    key: bytes,
    caveats: Sequence[Caveat],
    *,
    kid: bytes = b"kid",
    location: str = LOC,
    proof: bool = False,
    legacy: bool = False,
) -> bytes:
    """A correctly signed token that the library's ``add`` might refuse to build."""
    rnd = os.urandom(16)
    nonce = _pack([kid, rnd] if legacy else [kid, rnd, proof])
    packed = [c.packed() for c in caveats]
    return _envelope(nonce, location, packed, _chain(key, nonce, packed, proof=proof))


def _tail(data: bytes) -> bytes:
    return data[-32:]


@attrs.frozen
class _Access:
    """The smallest access: a clock, a self-check and an action."""

    at: float = NOW
    action: int = Action.READ
    org_id: int | None = 1

    def now(self) -> float:
        return self.at

    def validate(self) -> None:
        return None


@attrs.frozen
class _Party:
    """A root token with one third-party caveat, and what the test needs to discharge it."""

    key: bytes
    tp_key: bytes
    token: Macaroon
    caveat: Caveat3P
    rn: bytes

    @property
    def ticket(self) -> bytes:
        assert self.caveat.ticket is not None
        return self.caveat.ticket

    def discharge(self, *caveats: Caveat, location: str = TP) -> Macaroon:
        ticket_caveats, dm = discharge_ticket(self.tp_key, location, self.ticket)
        assert list(ticket_caveats) == [ConfineOrganization(1)]
        dm.add(*caveats)
        return dm


def _party(*first: Caveat) -> _Party:
    key, tp_key = os.urandom(32), os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(Organization(1, Action.ALL), *first)
    c3p = Caveat3P.new(tp_key, TP, ConfineOrganization(1))
    assert c3p.discharge_key is not None
    m.add(c3p)
    return _Party(key, tp_key, Macaroon.decode(m.encode()), c3p, c3p.discharge_key)


# -- minting and first-party caveats -----------------------------------------


def test_new_token_decodes_to_its_location_kid_and_16_byte_rnd() -> None:
    key = os.urandom(32)
    data = Macaroon.new(b"kid", "loc", key).encode()
    m = Macaroon.decode(data)
    assert m.location == "loc"
    assert m.nonce.kid == b"kid"
    assert m.nonce.rnd is not None and len(m.nonce.rnd) == 16
    assert not m.nonce.proof and not m.nonce.legacy and not m.is_proof
    assert len(m.unsafe_caveats) == 0
    assert data[0] == 0x94 and len(_tail(data)) == 32
    assert m.encode() == data


def test_two_new_tokens_with_one_key_differ_in_rnd_and_tail() -> None:
    key = os.urandom(32)
    a, b = Macaroon.new(b"kid", LOC, key), Macaroon.new(b"kid", LOC, key)
    assert a.nonce.rnd != b.nonce.rnd
    assert _tail(a.encode()) != _tail(b.encode())


def test_first_party_caveat_round_trips_through_encoding() -> None:
    m = Macaroon.new(b"kid", LOC, os.urandom(32))
    caveats = [Organization(123, Action.READ), Apps({7: Action.READ | Action.WRITE, 42: 1})]
    m.add(*caveats)
    decoded = Macaroon.decode(m.encode())
    assert list(decoded.unsafe_caveats) == caveats
    assert type(decoded.unsafe_caveats[1]) is Apps
    assert decoded.encode() == m.encode()
    assert decoded.to_json() == m.to_json()


def test_verify_with_the_root_key_returns_the_first_party_caveats() -> None:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    assert Macaroon.decode(m.encode()).verify(key) == CaveatSet()
    m.add(Organization(1, Action.READ), ValidityWindow(NOW - 10, NOW + 10))
    verified = Macaroon.decode(m.encode()).verify(key)
    assert verified == m.unsafe_caveats
    verified.validate(_Access())
    with pytest.raises(UnauthorizedError, match="expired"):
        verified.validate(_Access(at=NOW + 11))


def test_attenuation_is_decode_add_encode_without_the_key() -> None:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(Organization(1, Action.READ | Action.WRITE))
    holder = Macaroon.decode(m.encode())
    holder.add(ActionCaveat(Action.READ))
    data = holder.encode()
    prefix = 1 + len(m.nonce.encode()) + len(_pack(LOC))
    assert data[:prefix] == m.encode()[:prefix]  # same nonce and location
    verified = Macaroon.decode(data).verify(key)
    assert list(verified) == [Organization(1, Action.READ | Action.WRITE), ActionCaveat(1)]
    with pytest.raises(UnauthorizedError):
        verified.validate(_Access(action=Action.WRITE))


def test_verify_with_another_key_fails() -> None:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(Organization(1, Action.READ))
    decoded = Macaroon.decode(m.encode())
    # (key + b"\0" would pass: HMAC zero-pads short keys, in Go as here.)
    for wrong in (os.urandom(32), b"\xff" * 32, key[:-1], key[1:], b""):
        with pytest.raises(VerificationError, match="macaroon verify: invalid"):
            decoded.verify(wrong)


def test_flipping_any_single_byte_of_the_tail_fails_verification() -> None:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(Organization(1, Action.READ))
    data = m.encode()
    Macaroon.decode(data).verify(key)
    for i in range(len(data) - 32, len(data)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[i] ^= flip
            with pytest.raises(VerificationError, match="invalid"):
                Macaroon.decode(bytes(bad)).verify(key)
    all_ff = data[:-32] + b"\xff" * 32
    with pytest.raises(VerificationError, match="invalid"):
        Macaroon.decode(all_ff).verify(key)


def _signed(key: bytes, caveats: Sequence[Caveat]) -> tuple[bytes, list[bytes], bytes]:
    """A token made by the library, with its nonce bytes and one-caveat encodings."""
    m = Macaroon.new(b"kid", LOC, key)
    m.add(*caveats)
    return m.nonce.encode(), [c.packed() for c in caveats], m.encode()


_THREE = (Organization(1, Action.ALL), ActionCaveat(Action.READ), ValidityWindow(NOW, NOW + 60))


def test_removing_any_caveat_fails_verification() -> None:
    key = os.urandom(32)
    nonce, packed, data = _signed(key, _THREE)
    assert _envelope(nonce, LOC, packed, _tail(data)) == data  # the rebuild is faithful
    for i in range(len(packed)):
        fewer = packed[:i] + packed[i + 1 :]
        with pytest.raises(VerificationError, match="invalid"):
            Macaroon.decode(_envelope(nonce, LOC, fewer, _tail(data))).verify(key)
    # The tail of the shorter chain is what the holder of the longer token lacks.
    assert _chain(key, nonce, packed[:2], proof=False) != _tail(data)


def test_reordering_caveats_fails_verification() -> None:
    key = os.urandom(32)
    nonce, packed, data = _signed(key, _THREE)
    for order in ((1, 0, 2), (0, 2, 1), (2, 1, 0)):
        shuffled = [packed[i] for i in order]
        with pytest.raises(VerificationError, match="invalid"):
            Macaroon.decode(_envelope(nonce, LOC, shuffled, _tail(data))).verify(key)


def test_appending_a_caveat_with_a_fake_tail_fails_verification() -> None:
    key = os.urandom(32)
    nonce, packed, data = _signed(key, _THREE)
    extra = Apps({5: Action.READ}).packed()
    longer = [*packed, extra]
    right = _h(_tail(data), extra)
    for fake in (_tail(data), os.urandom(32), _h(os.urandom(32), extra), _h(key, extra)):
        with pytest.raises(VerificationError, match="invalid"):
            Macaroon.decode(_envelope(nonce, LOC, longer, fake)).verify(key)
    # Appending honestly, from the tail, is attenuation and verifies.
    Macaroon.decode(_envelope(nonce, LOC, longer, right)).verify(key)


def test_replacing_a_caveat_fails_verification() -> None:
    key = os.urandom(32)
    nonce, packed, data = _signed(key, _THREE)
    wider = [Organization(1, Action.ALL).packed(), ActionCaveat(Action.ALL).packed(), packed[2]]
    with pytest.raises(VerificationError, match="invalid"):
        Macaroon.decode(_envelope(nonce, LOC, wider, _tail(data))).verify(key)


def test_changing_the_nonce_fails_verification_but_the_location_is_not_signed() -> None:
    key = os.urandom(32)
    nonce, packed, data = _signed(key, _THREE)
    other_nonce = Nonce(b"kid", os.urandom(16), False).encode()
    with pytest.raises(VerificationError, match="invalid"):
        Macaroon.decode(_envelope(other_nonce, LOC, packed, _tail(data))).verify(key)
    proof_nonce = Nonce(b"kid", Macaroon.decode(data).nonce.rnd, True).encode()
    with pytest.raises(VerificationError, match="invalid"):
        Macaroon.decode(_envelope(proof_nonce, LOC, packed, _tail(data))).verify(key)
    # The location is outside the chain: Go lets it change freely, and so do we.
    moved = Macaroon.decode(_envelope(nonce, "https://elsewhere", packed, _tail(data)))
    assert moved.location == "https://elsewhere"
    assert list(moved.verify(key)) == list(_THREE)


# -- third-party caveats and discharges --------------------------------------


def test_discharged_token_verifies_and_returns_the_discharge_caveats() -> None:
    p = _party()
    dm = p.discharge(ValidityWindow(NOW - 1, NOW + 300))
    for discharge in (dm.encode(), dm, Macaroon.decode(dm.encode())):
        verified = p.token.verify(p.key, [discharge])
        assert list(verified) == [Organization(1, Action.ALL), ValidityWindow(NOW - 1, NOW + 300)]
    verified.validate(_Access(at=NOW, action=Action.NONE))
    with pytest.raises(UnauthorizedError, match="expired"):
        verified.validate(_Access(at=NOW + 301, action=Action.NONE))


def test_verified_caveats_never_include_third_party_or_binding_caveats() -> None:
    p = _party()
    dm = p.discharge(ValidityWindow(NOW, NOW + 1))
    dm.bind(p.token)
    verified = p.token.verify(p.key, [dm.encode()])
    assert not verified.of_type(Caveat3P) and not verified.of_type(BindToParentToken)
    assert len(verified) == 2


def test_undischarged_third_party_caveat_fails() -> None:
    p = _party()
    with pytest.raises(VerificationError, match="no matching discharge token"):
        p.token.verify(p.key)
    with pytest.raises(VerificationError, match="no matching discharge token"):
        p.token.verify(p.key, [b"", b"garbage", p.token.encode()])


def test_discharge_for_another_ticket_does_not_match() -> None:
    p, q = _party(), _party()
    with pytest.raises(VerificationError, match="no matching discharge token"):
        p.token.verify(p.key, [q.discharge().encode()])


def test_discharges_are_matched_by_ticket_not_by_location_or_order() -> None:
    p = _party()
    elsewhere = p.discharge(location="https://somewhere.else").encode()
    noise = [_party().discharge().encode(), Macaroon.new(b"x", TP, os.urandom(32)).encode()]
    assert list(p.token.verify(p.key, [*noise, elsewhere])) == [Organization(1, Action.ALL)]
    assert list(p.token.verify(p.key, [elsewhere, *noise])) == [Organization(1, Action.ALL)]


def test_discharge_minted_with_a_wrong_root_key_fails() -> None:
    p = _party()
    forged_proof = _forge(os.urandom(32), [], kid=p.ticket, location=TP, proof=True)
    forged_legacy = Macaroon.new(p.ticket, TP, os.urandom(32)).encode()
    for forged in (forged_proof, forged_legacy):
        assert Macaroon.decode(forged).nonce.kid == p.ticket
        with pytest.raises(VerificationError, match=r"discharge for .* failed"):
            p.token.verify(p.key, [forged])


def test_discharge_signed_with_the_root_key_or_the_third_party_key_fails() -> None:
    p = _party()
    for wrong in (p.key, p.tp_key, p.ticket):
        forged = _forge(wrong, [ValidityWindow(0, 2**40)], kid=p.ticket, location=TP, proof=True)
        with pytest.raises(VerificationError, match="invalid"):
            p.token.verify(p.key, [forged])


def test_third_party_refuses_a_ticket_for_another_key_or_altered() -> None:
    p = _party()
    with pytest.raises(VerificationError, match="bad ticket"):
        discharge_ticket(os.urandom(32), TP, p.ticket)
    for i in (0, 11, 12, 20, len(p.ticket) - 1):
        altered = bytearray(p.ticket)
        altered[i] ^= 0x01
        with pytest.raises(VerificationError, match="bad ticket"):
            discharge_ticket(p.tp_key, TP, bytes(altered))
    with pytest.raises(ValueError, match="32 bytes"):
        discharge_ticket(p.tp_key[:16], TP, p.ticket)


def test_re_signed_discharge_with_caveats_removed_or_changed_fails() -> None:
    """A holder knows only the finalized tail: it cannot re-sign a changed discharge."""
    p = _party()
    dm = p.discharge(ValidityWindow(NOW, NOW + 300), ActionCaveat(Action.READ))
    data = dm.encode()
    nonce = dm.nonce.encode()
    good = [c.packed() for c in dm.unsafe_caveats]
    p.token.verify(p.key, [data])
    final = _tail(data)
    variants = [
        [good[1]],  # expiry removed
        [ValidityWindow(NOW, NOW + 10**9).packed(), good[1]],  # expiry widened
        [good[1], good[0]],  # reordered
    ]
    for caveats in variants:
        for tail in (final, _h(FINALIZATION_KEY, final), _chain(final, nonce, caveats, proof=True)):
            forged = _envelope(nonce, TP, caveats, tail)
            with pytest.raises(VerificationError, match="invalid"):
                p.token.verify(p.key, [forged])


def test_extending_an_encoded_proof_raises_attenuation_error() -> None:
    p = _party()
    dm = p.discharge(ValidityWindow(NOW, NOW + 300))
    data = dm.encode()
    for proof in (dm, Macaroon.decode(data)):
        with pytest.raises(AttenuationError, match="can't add caveats to finalized proof"):
            proof.add(ActionCaveat(Action.READ))
        with pytest.raises(AttenuationError, match="finalized proof"):
            proof.bind(p.token)
        with pytest.raises(AttenuationError, match="finalized proof"):
            proof.add()
        assert proof.encode() == data


def test_hand_forged_extension_of_a_proof_fails_verification() -> None:
    p = _party()
    dm = p.discharge(ValidityWindow(NOW, NOW + 300))
    data = dm.encode()
    nonce = dm.nonce.encode()
    packed = [c.packed() for c in dm.unsafe_caveats]
    final = _tail(data)
    for extra in (ActionCaveat(Action.READ), FlyioUserID(1), BindToParentToken(b"")):
        longer = [*packed, extra.packed()]
        step = _h(final, extra.packed())
        for tail in (step, _h(FINALIZATION_KEY, step)):
            forged = _envelope(nonce, TP, longer, tail)
            with pytest.raises(VerificationError, match="invalid"):
                p.token.verify(p.key, [forged], {TP: [p.tp_key]})


def test_unfinalized_proof_cannot_be_verified() -> None:
    p = _party()
    dm = p.discharge(ValidityWindow(NOW, NOW + 300))
    with pytest.raises(VerificationError, match="can't verify unfinalized proof"):
        dm.verify(p.rn)
    with pytest.raises(VerificationError, match="can't verify unfinalized proof"):
        p.token.verify(p.key, [dm])
    dm.encode()
    assert list(dm.verify(p.rn)) == [ValidityWindow(NOW, NOW + 300)]
    p.token.verify(p.key, [dm])


def test_the_nonce_of_a_token_is_read_only_and_decodes_to_the_signed_bytes() -> None:
    token = Macaroon.new(b"kid", "loc", b"k" * 32)
    token.add(Organization(1, Action.ALL))
    data = token.encode()
    for _ in range(2):  # the second decode takes the memo's known-token path
        decoded = Macaroon.decode(data)
        assert decoded.nonce == token.nonce
        assert decoded.nonce.encode() == data[1 : 1 + len(token.nonce.encode())]
        with pytest.raises(AttributeError):
            decoded.nonce = token.nonce  # type: ignore[misc]


def test_proof_is_finalized_by_its_first_encoding_only() -> None:
    p = _party()
    dm = p.discharge()
    unfinalized = dm._tail
    first = dm.encode()
    assert _tail(first) == _h(FINALIZATION_KEY, unfinalized)
    assert dm.encode() == first
    assert encode_token(dm) == "fm2_" + base64.b64encode(first).decode()


def test_legacy_non_proof_discharge_still_satisfies() -> None:
    p = _party()
    legacy = Macaroon.new(p.ticket, TP, p.rn)
    legacy.add(ValidityWindow(NOW, NOW + 60))
    data = legacy.encode()
    assert not Macaroon.decode(data).nonce.proof
    assert list(p.token.verify(p.key, [data])) == [
        Organization(1, Action.ALL),
        ValidityWindow(NOW, NOW + 60),
    ]
    # A holder may attenuate a legacy discharge, and it still satisfies.
    held = Macaroon.decode(data)
    held.add(ActionCaveat(Action.READ))
    assert ActionCaveat(Action.READ) in p.token.verify(p.key, [held.encode()])
    # So does one with the 2-element nonce of the oldest tokens.
    v0 = _forge(p.rn, [ValidityWindow(NOW, NOW + 60)], kid=p.ticket, location=TP, legacy=True)
    assert Macaroon.decode(v0).nonce.legacy
    assert ValidityWindow(NOW, NOW + 60) in p.token.verify(p.key, [v0])


def test_second_discharge_for_the_same_ticket_works_when_the_first_is_bad() -> None:
    p = _party()
    good = p.discharge(ValidityWindow(NOW, NOW + 60)).encode()
    bad = _forge(os.urandom(32), [], kid=p.ticket, location=TP, proof=True)
    worse = Macaroon.new(p.ticket, TP, os.urandom(32)).encode()
    for order in ([bad, good], [good, bad], [bad, worse, good], [b"\x94", bad, good]):
        assert ValidityWindow(NOW, NOW + 60) in p.token.verify(p.key, order)
    with pytest.raises(VerificationError, match=r"failed: .*invalid.*; .*invalid"):
        p.token.verify(p.key, [bad, worse])


def test_first_good_discharge_wins() -> None:
    p = _party()
    one = p.discharge(ValidityWindow(NOW, NOW + 60)).encode()
    two = p.discharge(ValidityWindow(NOW, NOW + 120)).encode()
    assert ValidityWindow(NOW, NOW + 60) in p.token.verify(p.key, [one, two])
    assert ValidityWindow(NOW, NOW + 120) not in p.token.verify(p.key, [one, two])
    assert ValidityWindow(NOW, NOW + 120) in p.token.verify(p.key, [two, one])


def test_third_party_caveat_inside_a_discharge_can_never_be_satisfied() -> None:
    p = _party()
    dm = p.discharge()
    inner = Caveat3P.new(os.urandom(32), "https://nested.example")
    dm.add(inner)
    data = dm.encode()
    with pytest.raises(VerificationError, match="no matching discharge token"):
        p.token.verify(p.key, [data])


# -- binding ------------------------------------------------------------------


def test_bound_discharge_verifies() -> None:
    p = _party()
    dm = p.discharge(ValidityWindow(NOW, NOW + 60))
    dm.bind(p.token)
    bid = hashlib.sha256(_tail(p.token.encode())).digest()[:16]
    assert dm.unsafe_caveats[-1] == BindToParentToken(bid)
    assert list(p.token.verify(p.key, [dm.encode()])) == [
        Organization(1, Action.ALL),
        ValidityWindow(NOW, NOW + 60),
    ]


def test_bind_accepts_the_parent_as_bytes() -> None:
    p = _party()
    a, b = p.discharge(), p.discharge()
    a.bind(p.token)
    b.bind(p.token.encode())
    assert a.unsafe_caveats == b.unsafe_caveats


def test_discharge_bound_to_another_parent_fails() -> None:
    p = _party()
    other = Macaroon.new(b"kid", LOC, p.key)
    other.add(Organization(2, Action.ALL))
    dm = p.discharge()
    dm.bind(other)
    with pytest.raises(VerificationError, match="bound to different parent"):
        p.token.verify(p.key, [dm.encode()])


def test_bound_discharge_survives_further_attenuation_but_not_a_less_attenuated_parent() -> None:
    p = _party()
    before = p.token.encode()  # P1: Organization, 3P
    later = Macaroon.decode(before)
    later.add(ActionCaveat(Action.READ))  # P2 = P1 + Action
    dm = p.discharge()
    dm.bind(later)
    data = dm.encode()
    assert list(later.verify(p.key, [data])) == [
        Organization(1, Action.ALL),
        ActionCaveat(Action.READ),
    ]
    even_later = Macaroon.decode(later.encode())
    even_later.add(Apps({9: Action.READ}))  # P3 = P2 + Apps
    assert Apps({9: Action.READ}) in even_later.verify(p.key, [data])
    with pytest.raises(VerificationError, match="bound to different parent"):
        Macaroon.decode(before).verify(p.key, [data])
    # Bound to P1, the discharge works with P1 and with every attenuation of it.
    dm1 = p.discharge()
    dm1.bind(Macaroon.decode(before))
    d1 = dm1.encode()
    for parent in (before, later.encode(), even_later.encode()):
        Macaroon.decode(parent).verify(p.key, [d1])


def test_stacked_bindings_must_all_hold() -> None:
    p = _party()
    later = Macaroon.decode(p.token.encode())
    later.add(ActionCaveat(Action.READ))
    dm = p.discharge()
    dm.bind(p.token)
    dm.bind(later)
    data = dm.encode()
    later.verify(p.key, [data])
    with pytest.raises(VerificationError, match="bound to different parent"):
        p.token.verify(p.key, [data])


def test_discharge_with_an_extra_wrong_binding_fails() -> None:
    p = _party()
    dm = p.discharge()
    dm.bind(p.token)
    dm.add(BindToParentToken(bytes.fromhex("deadbeef")))
    with pytest.raises(VerificationError, match="bound to different parent"):
        p.token.verify(p.key, [dm.encode()])


def test_binding_id_is_a_prefix_match_against_the_parent_binding_ids() -> None:
    """Mirrors Go's TestMacaroons "verify - bound root token"."""
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(BindToParentToken(bytes.fromhex("dead")))
    decoded = Macaroon.decode(m.encode())

    def verify(ids: list[bytes]) -> None:
        decoded._verify_discharge(key, _BindingIds(ids), True, _Run())

    for ids in ([], [b"\xff"], [b"\xde"]):
        with pytest.raises(VerificationError, match="bound to different parent"):
            verify(ids)
    verify([bytes.fromhex("dead")])
    verify([bytes.fromhex("deadbeef")])
    verify([b"\xff", bytes.fromhex("deadbeef")])
    # A top-level token has no parent, so its binding never holds.
    with pytest.raises(VerificationError, match="bound to different parent"):
        decoded.verify(key)


def test_empty_binding_matches_any_parent_but_not_none() -> None:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(BindToParentToken(b""))
    decoded = Macaroon.decode(m.encode())
    decoded._verify_discharge(key, _BindingIds([os.urandom(16)]), True, _Run())
    with pytest.raises(VerificationError, match="bound to different parent"):
        decoded._verify_discharge(key, _BindingIds([]), True, _Run())


def test_unbound_discharge_verifies_standalone_with_or_without_parent_ids() -> None:
    p = _party()
    data = p.discharge(ValidityWindow(NOW, NOW + 60)).encode()
    d = Macaroon.decode(data)
    assert list(d.verify(p.rn)) == [ValidityWindow(NOW, NOW + 60)]
    d._verify_discharge(p.rn, _BindingIds([bytes([123])]), True, _Run())
    with pytest.raises(VerificationError, match="invalid"):
        d.verify(p.key)


# -- attestations and trust ---------------------------------------------------


def test_attestations_are_returned_only_from_trusted_discharges() -> None:
    p = _party()
    dm = p.discharge(ValidityWindow(NOW, NOW + 60), FlyioUserID(42), GoogleUserID(2**70 + 3))
    data = dm.encode()
    base = [Organization(1, Action.ALL), ValidityWindow(NOW, NOW + 60)]
    untrusted: list[dict[str, list[bytes]] | None] = [
        None,
        {},
        {TP: []},
        {TP: [os.urandom(32)]},
        {TP: [p.tp_key[:31]]},
        {"https://other.example": [p.tp_key]},
    ]
    for trusted in untrusted:
        assert list(p.token.verify(p.key, [data], trusted)) == base, trusted
    for keys in ([p.tp_key], [os.urandom(32), p.tp_key]):
        verified = p.token.verify(p.key, [data], {TP: keys})
        assert list(verified) == [*base, FlyioUserID(42), GoogleUserID(2**70 + 3)]
        verified.validate(_Access(action=Action.NONE))  # attestations are not validated


def test_trusted_key_opening_the_ticket_to_another_discharge_key_rejects_the_discharge() -> None:
    """The VerifierKey and the ticket must agree on the discharge key ``rn``."""
    key, tp_key = os.urandom(32), os.urandom(32)
    honest = Caveat3P.new(tp_key, TP)
    other_rn = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(Caveat3P(TP, None, honest.ticket, discharge_key=other_rn))
    token = Macaroon.decode(m.encode())
    assert honest.ticket is not None
    forged = Macaroon._mint(Nonce(honest.ticket, os.urandom(16), True), TP, other_rn)
    forged.add(FlyioUserID(1))
    data = forged.encode()
    assert list(token.verify(key, [data])) == []  # signature fine, attestation untrusted
    with pytest.raises(VerificationError, match="discharge key from ticket/VerifierKey mismatch"):
        token.verify(key, [data], {TP: [tp_key]})


def test_attestation_in_a_non_proof_token_is_a_verification_error() -> None:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    with pytest.raises(AttenuationError, match="cannot add attestations to non-proof"):
        m.add(FlyioUserID(1))
    forged = _forge(key, [Organization(1, Action.ALL), FlyioUserID(1)])
    with pytest.raises(VerificationError, match="attestation in non-proof macaroon"):
        Macaroon.decode(forged).verify(key)


def test_attestation_in_a_non_proof_discharge_is_a_verification_error() -> None:
    p = _party()
    legacy = Macaroon.new(p.ticket, TP, p.rn)
    with pytest.raises(AttenuationError, match="cannot add attestations to non-proof"):
        legacy.add(GitHubUserID(7))
    forged = _forge(p.rn, [GitHubUserID(7)], kid=p.ticket, location=TP)
    for trusted in (None, {TP: [p.tp_key]}):
        with pytest.raises(VerificationError, match="attestation in non-proof macaroon"):
            p.token.verify(p.key, [forged], trusted)


# -- tickets ------------------------------------------------------------------


def test_third_party_tickets_with_and_without_discharges() -> None:
    key, ka, kb = os.urandom(32), os.urandom(32), os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    a = Caveat3P.new(ka, "https://a.example")
    nested = Caveat3P.new(kb, "https://b.example")
    m.add(a)
    m.add(IfPresent((nested, Apps({1: Action.READ})), Action.READ))
    token = Macaroon.decode(m.encode())
    assert a.ticket is not None and nested.ticket is not None
    assert token.third_party_tickets() == {
        "https://a.example": [a.ticket],
        "https://b.example": [nested.ticket],
    }
    _, da = discharge_ticket(ka, "https://a.example", a.ticket)
    _, db = discharge_ticket(kb, "https://b.example", nested.ticket)
    da_bytes, db_bytes = da.encode(), db.encode()
    assert token.third_party_tickets(da_bytes) == {"https://b.example": [nested.ticket]}
    assert token.third_party_tickets(da) == {"https://b.example": [nested.ticket]}
    assert token.third_party_tickets(db_bytes, b"junk") == {"https://a.example": [a.ticket]}
    assert token.third_party_tickets(da_bytes, db) == {}
    # A discharge counts by its ticket alone, wherever it was issued.
    _, moved = discharge_ticket(ka, "https://moved.example", a.ticket)
    assert "https://a.example" not in token.third_party_tickets(moved.encode())


# -- the rules of add ----------------------------------------------------------


def test_add_drops_byte_identical_caveats() -> None:
    """Mirrors Go's TestDuplicateCaveats."""
    m = Macaroon.new(b"kid", LOC, os.urandom(32))

    def org(mask: int, org_id: int) -> Organization:
        return Organization(org_id, mask)

    steps: list[tuple[list[Caveat], int]] = [
        ([org(Action.ALL, 123)], 1),
        ([org(Action.ALL, 123)], 1),
        ([org(Action.ALL, 123)], 1),
        ([org(Action.ALL, 234)], 2),
        ([org(Action.READ, 123)], 3),
        ([org(Action.READ, 234)], 4),
        ([org(Action.ALL, 345), org(Action.ALL, 345)], 5),
    ]
    for caveats, count in steps:
        before, tail = len(m.unsafe_caveats), m._tail
        m.add(*caveats)
        assert len(m.unsafe_caveats) == count
        if count == before:
            assert m._tail == tail  # a dropped caveat is not MACed either


def test_dropped_duplicate_leaves_the_tail_alone() -> None:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(ActionCaveat(Action.READ))
    before = m.encode()
    m.add(ActionCaveat(Action.READ), ActionCaveat(1))
    assert m.encode() == before
    m.add(Apps({1: 1}), Apps({1: Action.READ}), ActionCaveat(Action.READ))
    assert len(m.unsafe_caveats) == 2
    assert list(Macaroon.decode(m.encode()).verify(key)) == [ActionCaveat(1), Apps({1: 1})]


def test_readding_a_tokens_own_caveats_is_a_no_op() -> None:
    p = _party(ActionCaveat(Action.READ))
    before = p.token.encode()
    p.token.add(*p.token.unsafe_caveats)  # its 3P caveat included: a duplicate, not an error
    assert p.token.encode() == before


def test_one_new_third_party_caveat_given_twice_in_one_call_is_added_once() -> None:
    key, ka = os.urandom(32), os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    c = Caveat3P.new(ka, TP)
    m.add(c, c)
    assert len(m.unsafe_caveats.of_type(Caveat3P)) == 1


def test_second_third_party_caveat_for_a_location_raises() -> None:
    key, ka = os.urandom(32), os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add_3p(ka, TP)
    with pytest.raises(AttenuationError, match=f"attempting to add multiple 3ps for {TP}"):
        m.add_3p(ka, TP)
    with pytest.raises(AttenuationError, match="multiple 3ps"):
        m.add(Caveat3P.new(os.urandom(32), TP))
    fresh = Macaroon.new(b"kid", LOC, key)
    with pytest.raises(AttenuationError, match="multiple 3ps"):
        fresh.add(Caveat3P.new(ka, TP), Caveat3P.new(ka, TP))
    assert len(fresh.unsafe_caveats) == 0
    m.add_3p(ka, "https://other.example")  # another location is fine
    assert len(m.unsafe_caveats.of_type(Caveat3P)) == 2


def test_third_party_caveat_inside_if_present_counts_for_its_location() -> None:
    key, ka = os.urandom(32), os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(IfPresent((Caveat3P.new(ka, TP),), Action.READ))
    with pytest.raises(AttenuationError, match="multiple 3ps"):
        m.add_3p(ka, TP)
    decoded = Macaroon.decode(m.encode())
    with pytest.raises(AttenuationError, match="multiple 3ps"):
        decoded.add_3p(ka, TP)


def test_attestations_are_refused_on_non_proofs_and_allowed_on_unfinalized_proofs() -> None:
    p = _party()
    for attestation in (FlyioUserID(1), GitHubUserID(2), GoogleUserID(3)):
        with pytest.raises(AttenuationError, match="cannot add attestations to non-proof"):
            p.token.add(attestation)
    dm = p.discharge(FlyioUserID(1), GitHubUserID(2), GoogleUserID(3))
    assert len(dm.unsafe_caveats) == 3


def test_a_failing_add_changes_nothing() -> None:
    key, ka = os.urandom(32), os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(Organization(1, Action.ALL), Caveat3P.new(ka, TP))
    from_json = CaveatSet.from_json('[{"type":"12345","body":{}}]')[0]
    failing: list[tuple[tuple[object, ...], type[Exception], str]] = [
        ((ActionCaveat(1), FlyioUserID(1)), AttenuationError, "attestations"),
        ((ActionCaveat(1), Caveat3P.new(ka, TP)), AttenuationError, "multiple 3ps"),
        (
            (Caveat3P.new(ka, "https://x"), Caveat3P.new(ka, "https://x")),
            AttenuationError,
            "multiple 3ps",
        ),
        ((ActionCaveat(1), from_json), DecodeError, "from JSON to msgpack"),
        ((ActionCaveat(1), "not a caveat"), TypeError, "not a caveat"),
    ]
    for args, exc, message in failing:
        tail, caveats, data = m._tail, m.unsafe_caveats, m.encode()
        with pytest.raises(exc, match=message):
            m.add(*args)  # type: ignore[arg-type]
        assert m._tail == tail
        assert m.unsafe_caveats == caveats
        assert m.encode() == data
    m.add(ActionCaveat(1))
    assert len(m.unsafe_caveats) == 3


def test_failing_add_to_a_proof_changes_nothing() -> None:
    p = _party()
    dm = p.discharge(ValidityWindow(NOW, NOW + 60))
    tail = dm._tail
    with pytest.raises(AttenuationError, match="multiple 3ps"):
        dm.add(FlyioUserID(1), Caveat3P.new(p.tp_key, "x"), Caveat3P.new(p.tp_key, "x"))
    assert dm._tail == tail and len(dm.unsafe_caveats) == 1
    p.token.verify(p.key, [dm.encode()])


def test_one_caveat3p_added_to_two_tokens_shares_ticket_and_discharge() -> None:
    key, ka = os.urandom(32), os.urandom(32)
    c = Caveat3P.new(ka, TP)
    one, two = Macaroon.new(b"one", LOC, key), Macaroon.new(b"two", LOC, key)
    two.add(ActionCaveat(Action.READ))
    one.add(c)
    two.add(c)
    assert c.verifier_key is None  # the shared object is not changed
    (c1,) = Macaroon.decode(one.encode()).unsafe_caveats.of_type(Caveat3P)
    (c2,) = Macaroon.decode(two.encode()).unsafe_caveats.of_type(Caveat3P)
    assert c1.ticket == c2.ticket == c.ticket
    assert c1.verifier_key != c2.verifier_key
    assert c1.verifier_key is not None and len(c1.verifier_key) == 60
    assert c.ticket is not None
    _, dm = discharge_ticket(ka, TP, c.ticket)
    dm.add(ValidityWindow(NOW, NOW + 60))
    data = dm.encode()
    assert ValidityWindow(NOW, NOW + 60) in Macaroon.decode(one.encode()).verify(key, [data])
    assert ValidityWindow(NOW, NOW + 60) in Macaroon.decode(two.encode()).verify(key, [data])


def test_add_3p_requires_a_32_byte_key() -> None:
    m = Macaroon.new(b"kid", LOC, os.urandom(32))
    with pytest.raises(ValueError, match="32 bytes"):
        m.add_3p(os.urandom(16), TP)
    assert len(m.unsafe_caveats) == 0


def test_copy_is_independent() -> None:
    key = os.urandom(32)
    m = Macaroon.new(b"kid", LOC, key)
    m.add(ActionCaveat(Action.READ))
    c = m.copy()
    c.add(Apps({1: 1}))
    assert len(m.unsafe_caveats) == 1 and len(c.unsafe_caveats) == 2
    m.verify(key)
    c.verify(key)


# -- secrets stay out of reprs and messages ------------------------------------


def _secret_forms(secret: bytes) -> list[str]:
    return [
        secret.hex(),
        repr(secret)[2:-1],
        base64.b64encode(secret).decode()[:20],
    ]


def test_repr_never_shows_the_tail_the_key_or_the_token() -> None:
    p = _party(ActionCaveat(Action.READ))
    dm = p.discharge(FlyioUserID(5))
    dm.bind(p.token)
    d_data = dm.encode()
    for m, secrets in (
        (p.token, [p.key, _tail(p.token.encode()), p.rn]),
        (dm, [p.rn, _tail(d_data), p.tp_key]),
        (Macaroon.decode(d_data), [p.rn, _tail(d_data)]),
    ):
        data = m.encode()
        token = encode_token(m)
        shown = [repr(m), str(m), repr(m.unsafe_caveats), repr(p.caveat)]
        for text in shown:
            assert token not in text
            assert token[4:40] not in text
            assert data.hex()[:40] not in text
            for secret in secrets:
                for form in _secret_forms(secret):
                    assert form not in text, (text, form)
    assert "Macaroon" in repr(p.token) and LOC in repr(p.token)
    assert to_header(p.token) not in repr(p.token)


def test_verification_errors_do_not_show_key_material() -> None:
    p = _party()
    bad = _forge(os.urandom(32), [], kid=p.ticket, location=TP, proof=True)
    with pytest.raises(VerificationError) as info:
        p.token.verify(p.key, [bad])
    for secret in (p.key, p.rn, _tail(p.token.encode()), p.ticket):
        for form in _secret_forms(secret):
            assert form not in str(info.value)
