"""``verify`` on headers with several permission tokens (issue 20).

The command line decides them as :meth:`Verifier.authorize` does: allowed
if any permission token that verifies allows the access. Every token is
minted by the library on throw-away keys.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from macaroons_authz import (
    Action,
    FlyAccess,
    FlyioUserID,
    Macaroon,
    MemoryKeyring,
    ValidityWindow,
    Verifier,
    app_token,
    discharge_ticket,
    encode_token,
    kid_for_key,
    new_encryption_key,
    new_signing_key,
    org_token,
    to_header,
    token_id,
)
from macaroons_authz.cli import main
from macaroons_authz.decision import MAX_PERMISSION_TOKENS

NOW = 1_700_000_000
ORG, OTHER_ORG = 1234, 99
AUTH = "https://auth.example"
READ_42 = '{"orgid":1234,"appid":42,"action":"r"}'
WRITE_43 = '{"orgid":1234,"appid":43,"action":"w"}'
READ_OTHER = '{"orgid":99,"action":"r"}'


@attrs.frozen
class World:
    key: bytes
    key_file: str
    ours: Macaroon  # app 42 of ORG, read only
    theirs: Macaroon  # all of OTHER_ORG
    forged: Macaroon  # this key's KID, another key's signature: all of ORG
    stranger: Macaroon  # another key under its own KID: all of ORG


@pytest.fixture
def world(tmp_path: Path) -> World:
    key, other = new_signing_key(), new_signing_key()
    path = tmp_path / "root.key"
    path.write_text(key.hex() + "\n")
    return World(
        key,
        str(path),
        app_token(key, ORG, [42], actions=Action.READ, expires_in=3600, now=NOW),
        org_token(key, OTHER_ORG, expires_in=3600, now=NOW),
        org_token(other, ORG, kid=kid_for_key(key), expires_in=3600, now=NOW),
        org_token(other, ORG, expires_in=3600, now=NOW),
    )


def verify(
    w: World, header: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    code = main(["verify", header, "--key-file", w.key_file, "--now", str(NOW + 1), *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def assert_no_secret(w: World, header: str, out: str) -> None:
    for piece in header.removeprefix("FlyV1 ").split(","):
        assert piece not in out and piece[-20:] not in out and piece[4:40] not in out
    assert w.key.hex() not in out


def test_one_of_two_allows_and_the_output_says_which(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    for tokens, number in (((world.ours, world.theirs), 1), ((world.theirs, world.ours), 2)):
        header = to_header(*tokens)
        code, out, err = verify(world, header, capsys, "--access", READ_42)
        assert (code, err) == (0, "")
        assert out == f"ALLOWED by token {number} of 2 ({token_id(world.ours)})\n"
        code, out, _ = verify(world, header, capsys, "--access", READ_OTHER)
        assert (code, out) == (
            0,
            f"ALLOWED by token {3 - number} of 2 ({token_id(world.theirs)})\n",
        )
    # --explain gives each token's line: the one before the allowing one, and it.
    header = to_header(world.theirs, world.ours)
    code, out, _ = verify(world, header, capsys, "--access", READ_42, "--explain")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"ALLOWED by token 2 of 2 ({token_id(world.ours)})"
    assert "  - token 1 DENIED: unauthorized for org 1234" in lines
    assert "  - token 2 ALLOWS" in lines
    assert f"      token id {token_id(world.theirs)}" in lines
    assert f"      key id   {kid_for_key(world.key).hex()}" in lines
    assert '      Apps {"apps":{"42":"r"}} -> pass' in lines
    assert_no_secret(world, header, out)


def test_the_cli_and_the_verifier_pick_the_same_token(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    both = org_token(world.key, ORG, expires_in=3600, now=NOW)
    verifier = Verifier(MemoryKeyring([world.key]))
    header = to_header(world.forged, world.ours, both, world.theirs)
    for access, number in ((READ_42, 2), (WRITE_43, 3), (READ_OTHER, 4)):
        code, out, _ = verify(world, header, capsys, "--access", access)
        expected = verifier.authorize_token(header, FlyAccess.from_json(access, now=NOW + 1))
        assert (code, out) == (0, f"ALLOWED by token {number} of 4 ({expected.token_id})\n")


def test_neither_allows_gives_both_reasons(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    header = to_header(world.ours, world.theirs)
    code, out, err = verify(world, header, capsys, "--access", WRITE_43)
    assert (code, err) == (1, "")
    assert out == (
        "DENIED: none of 2 permission tokens allows the access\n"
        "  - token 1 DENIED: unauthorized for w on this token (Action); unauthorized for\n"
        "      app 43\n"
        "  - token 2 DENIED: unauthorized for org 1234\n"
    )
    code, out, _ = verify(world, header, capsys, "--access", WRITE_43, "--explain")
    assert code == 1
    lines = out.splitlines()
    assert lines[:3] == [
        "DENIED: none of 2 permission tokens allows the access",
        "  - token 1 DENIED: unauthorized for w on this token (Action); unauthorized for",
        "      app 43",
    ]
    assert '      Action "r" -> FAIL: unauthorized for w on this token (Action)' in lines
    assert "  - token 2 DENIED: unauthorized for org 1234" in lines
    assert '      Organization {"id":99,"mask":"rwcdC"} -> FAIL: unauthorized for org 1234' in lines
    assert_no_secret(world, header, out)


def test_a_forged_token_beside_a_valid_one(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    header = to_header(world.forged, world.ours)
    code, out, _ = verify(world, header, capsys)
    assert code == 0
    assert out == (
        "VALID: 1 of 2 permission tokens verified\n"
        "  - token 1 NOT AUTHENTIC: signature does not match this key\n"
        "  - token 2 VALID: signature and discharges verified\n"
    )
    # The forged token would allow app 43 (all of ORG): it is not authentic.
    code, out, _ = verify(
        world, header, capsys, "--access", '{"orgid":1234,"appid":43,"action":"r"}'
    )
    assert code == 1
    assert out == (
        "DENIED: none of 2 permission tokens allows the access\n"
        "  - token 1 NOT AUTHENTIC: signature does not match this key\n"
        "  - token 2 DENIED: unauthorized for app 43\n"
    )
    code, out, _ = verify(world, header, capsys, "--access", READ_42)
    assert (code, out) == (0, f"ALLOWED by token 2 of 2 ({token_id(world.ours)})\n")
    assert_no_secret(world, header, out)


def test_a_kid_mismatch_in_one_token_says_so(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ours_kid, their_kid = kid_for_key(world.key).hex(), (world.stranger.nonce.kid or b"").hex()
    header = to_header(world.stranger, world.ours)
    code, out, _ = verify(world, header, capsys, "--explain")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "VALID: 1 of 2 permission tokens verified"
    assert lines[1:3] == [
        f"  - token 1 NOT AUTHENTIC: token's key id {their_kid} is",
        f"      not this key's {ours_kid}",
    ]
    assert f"      key id   {their_kid}" in lines
    assert '      caveat  Apps {"apps":{"42":"r"}}' in lines
    # Neither authentic: NOT AUTHENTIC, exit 1, with or without an access.
    header = to_header(world.forged, world.stranger)
    for extra in ((), ("--access", READ_42)):
        code, out, _ = verify(world, header, capsys, *extra)
        assert code == 1
        assert out.splitlines()[:2] == [
            "NOT AUTHENTIC: none of 2 permission tokens verified",
            "  - token 1 NOT AUTHENTIC: signature does not match this key",
        ]
        assert f"token 2 NOT AUTHENTIC: token's key id {their_kid} is" in out
    assert_no_secret(world, header, out)


def test_each_token_is_verified_with_the_discharges_of_its_tickets(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    tp_key = new_encryption_key()

    def discharged(org: int) -> tuple[Macaroon, Macaroon]:
        token = org_token(world.key, org, expires_in=3600, now=NOW)
        token.add_3p(tp_key, AUTH)
        (ticket,) = token.third_party_tickets()[AUTH]
        _, discharge = discharge_ticket(tp_key, AUTH, ticket)
        discharge.add(ValidityWindow(NOW, NOW + 3600), FlyioUserID(7))
        discharge.bind(token)
        return token, discharge

    a, a_discharge = discharged(ORG)
    b, _ = discharged(OTHER_ORG)
    header = to_header(a, b, a_discharge)
    code, out, _ = verify(world, header, capsys, "--access", READ_OTHER)
    assert code == 1
    assert out == (
        "DENIED: none of 2 permission tokens allows the access\n"
        "  - token 1 DENIED: unauthorized for org 99\n"
        f"  - token 2 NOT AUTHENTIC: no matching discharge token for {AUTH}\n"
    )
    code, out, _ = verify(world, header, capsys, "--access", READ_42)
    assert (code, out) == (0, f"ALLOWED by token 1 of 2 ({token_id(a)})\n")
    assert_no_secret(world, header, out)


def test_the_same_token_twice_is_one_token(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = verify(world, to_header(world.ours, world.ours), capsys, "--access", READ_42)
    assert (code, out) == (0, f"ALLOWED token {token_id(world.ours)}\n")


def test_malformed_input_is_still_a_usage_error(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two = to_header(world.ours, world.theirs)
    too_many = to_header(
        *(org_token(world.key, ORG, now=NOW) for _ in range(MAX_PERMISSION_TOKENS + 1))
    )
    prefix = "error: cannot read the tokens: "
    cases = [
        (too_many, (), f"{prefix}more than {MAX_PERMISSION_TOKENS} permission tokens\n"),
        (f"{two},not-a-token", (), f"{prefix}bad token: no label\n"),
        (f"{two}, {encode_token(world.ours)}", (), f"{prefix}bad token: invalid token prefix\n"),
        ("FlyV1 fm2_AAAA", (), f"{prefix}no permission token\n"),
        (two, ("--access", "{bad json"), None),
    ]
    for header, extra, message in cases:
        code, out, err = verify(world, header, capsys, *extra)
        assert (code, out) == (2, "")
        assert len(err.splitlines()) == 1
        if message is None:
            assert err.startswith("error: bad --access")
        else:
            assert err == message


def test_the_tokens_share_one_hmac_budget_as_in_the_verifier(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from macaroons_authz import _verification

    refused = [app_token(world.key, ORG, [i], now=NOW) for i in (1, 2, 3)]
    allowing = org_token(world.key, ORG, now=NOW)
    costs = []
    for token in (*refused, allowing):
        with _verification.verification_run():
            token.verify(world.key)
            run = _verification.RUN.get()
            assert run is not None
            costs.append(run.macs)
    # Enough for each token alone, not for the four of one header.
    monkeypatch.setattr(_verification, "MAX_VERIFY_MACS", sum(costs) - 1)
    code, out, _ = verify(world, to_header(*refused, allowing), capsys, "--access", READ_42)
    assert code == 1
    budget = f"verification would take more than {sum(costs) - 1} HMAC operations"
    assert out.splitlines() == [
        "DENIED: none of 4 permission tokens allows the access",
        "  - token 1 DENIED: unauthorized for app 42",
        "  - token 2 DENIED: unauthorized for app 42",
        "  - token 3 DENIED: unauthorized for app 42",
        f"  - token 4 NOT AUTHENTIC: {budget}",
    ]
    code, out, _ = verify(world, to_header(allowing), capsys, "--access", READ_42)
    assert (code, out) == (0, f"ALLOWED token {token_id(allowing)}\n")
