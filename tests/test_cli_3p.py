"""The ``3p`` commands, as flyctl's ``fly tokens 3p`` (internal/command/tokens/3p.go).

flyctl's formats: ``3p ticket`` prints the ticket in standard base64;
``3p discharge`` prints the discharge's encoded bytes in standard base64
(not an ``fm2_`` token); ``3p add-discharge`` takes that form; ``3p add``
and ``3p add-discharge`` print a ``FlyV1`` header.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import pytest
from fly_helpers import KEY, ORG

from macaroons_authz import (
    Caveat3P,
    Macaroon,
    MemoryKeyring,
    Verifier,
    decode_token,
    discharge_ticket,
    encode_token,
    org_token,
    to_header,
)
from macaroons_authz.cli import main
from macaroons_authz.header import split_header

TP = "https://3p.example/auth"
SECRET = bytes(range(100, 132))
SECRET_B64 = base64.b64encode(SECRET).decode()


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("FLY_ACCESS_TOKEN", "FLY_API_TOKEN", "FLY_CONFIG_DIR", "TOKEN_3P_SHARED_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "secret.b64"
    path.write_text(SECRET_B64 + "\n")
    return str(path)


def run(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def permission_of(header: str) -> Macaroon:
    return Macaroon.decode(decode_token(split_header(header)[0]))


def test_add_ticket_discharge_add_discharge_round_trip(
    secret_file: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    header = to_header(org_token(KEY, ORG))
    code, added, err = run(["3p", "add", "-l", TP, "-s", secret_file], capsys, monkeypatch, header)
    assert (code, err) == (0, "")
    assert added.startswith("FlyV1 fm2_") and added.count(",") == 0
    token = permission_of(added)
    (cav,) = token.unsafe_caveats.of_type(Caveat3P)
    assert cav.location == TP

    code, ticket, err = run(["3p", "ticket", "-l", TP], capsys, monkeypatch, added)
    assert (code, err) == (0, "")
    assert base64.b64decode(ticket.strip(), validate=True) == cav.ticket

    code, out, err = run(
        ["3p", "discharge", "-l", TP, "-s", secret_file, "--ticket", ticket.strip()],
        capsys,
        monkeypatch,
    )
    assert (code, err) == (0, "")
    discharge = Macaroon.decode(base64.b64decode(out.strip(), validate=True))
    assert (discharge.location, discharge.nonce.kid) == (TP, cav.ticket)

    code, full, err = run(
        ["3p", "add-discharge", "-d", out.strip()], capsys, monkeypatch, added.strip()
    )
    assert (code, err) == (0, "")
    assert split_header(full.strip())[0] == split_header(added.strip())[0]
    verifier = Verifier(MemoryKeyring([KEY]))
    assert verifier.verify(full.strip())  # the permission token with its discharge
    with pytest.raises(Exception, match="discharge"):
        verifier.verify(added.strip())
    # The secret is never printed.
    for text in (added, ticket, out, full):
        assert SECRET_B64 not in text and SECRET.hex() not in text


def test_secret_from_the_environment_and_the_alias(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_3P_SHARED_SECRET", SECRET_B64)
    token = org_token(KEY, ORG)
    token.add_3p(SECRET, TP)
    (ticket,) = token.third_party_tickets()[TP]
    code, out, _ = run(
        ["third-party", "discharge", "-l", TP, "--ticket", base64.b64encode(ticket).decode()],
        capsys,
        monkeypatch,
    )
    assert code == 0
    discharge = Macaroon.decode(base64.b64decode(out.strip(), validate=True))
    assert (discharge.location, discharge.nonce.kid) == (TP, ticket)


def test_add_discharge_takes_an_fm2_token_and_the_token_from_fly_api_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = org_token(KEY, ORG)
    token.add_3p(SECRET, TP)
    (ticket,) = token.third_party_tickets()[TP]
    _, discharge = discharge_ticket(SECRET, TP, ticket)
    monkeypatch.setenv("FLY_API_TOKEN", to_header(token, "fo1_oauth"))
    code, out, err = run(
        ["3p", "add-discharge", "-d", encode_token(discharge)], capsys, monkeypatch
    )
    assert (code, err) == (0, "note: token from FLY_API_TOKEN\n")
    assert out == to_header(token, discharge) + "\n"


def test_the_secret_file_comes_before_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_3P_SHARED_SECRET", "not base64!")
    bad = tmp_path / "short.b64"
    bad.write_text(base64.b64encode(bytes(16)).decode())
    code, out, err = run(
        ["3p", "discharge", "-l", TP, "-s", str(bad), "--ticket", "AAAA"], capsys, monkeypatch
    )
    assert (code, out) == (2, "")
    assert err == "error: the shared secret should be 32 bytes long (decoded)\n"


@pytest.mark.parametrize(
    ("argv", "env_secret", "message"),
    [
        (["discharge", "-l", TP, "--ticket", "AAAA"], None, "give the shared secret with"),
        (
            ["discharge", "-l", TP, "--ticket", "AAAA"],
            "c2VjcmV0LXZhbHVl!!",
            "the shared secret in TOKEN_3P_SHARED_SECRET is not base64",
        ),
        (["discharge", "-l", TP, "--ticket", "@@@"], SECRET_B64, "--ticket is not base64"),
        (["discharge", "-l", TP, "--ticket", "AAAA"], SECRET_B64, "error: "),
        (["add", "-l", TP], None, "give the shared secret with"),
        (["ticket", "-l", "https://other.example"], None, "no third-party caveat for"),
        (["add-discharge", "-d", "fm2_AAAA"], None, "error: "),
        (["add-discharge", "-d", "***"], None, "neither base64 nor a token"),
        (["ticket"], None, "the following arguments are required: -l/--location"),
    ],
)
def test_mistakes_are_one_error_line_without_the_secret(
    argv: list[str],
    env_secret: str | None,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if env_secret is not None:
        monkeypatch.setenv("TOKEN_3P_SHARED_SECRET", env_secret)
    header = to_header(org_token(KEY, ORG))
    try:
        code, out, err = run(["3p", *argv], capsys, monkeypatch, header)
    except SystemExit as exc:  # argparse's own errors
        code, out, err = int(str(exc.code)), *capsys.readouterr()
    assert (code, out) == (2, "")
    assert message in err
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and err.count("error:") == 1
    assert "c2VjcmV0LXZhbHVl" not in err and SECRET_B64 not in err


def test_add_discharge_refuses_a_discharge_for_another_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, other = org_token(KEY, ORG), org_token(KEY, ORG)
    mine.add_3p(SECRET, TP)
    other.add_3p(SECRET, TP)
    (ticket,) = other.third_party_tickets()[TP]
    _, discharge = discharge_ticket(SECRET, TP, ticket)
    code, out, err = run(
        ["3p", "add-discharge", "-d", base64.b64encode(discharge.encode()).decode()],
        capsys,
        monkeypatch,
        to_header(mine),
    )
    assert (code, out) == (2, "")
    assert err == "error: the discharge is for none of the token's third-party caveats\n"


def test_subprocess_exit_status_and_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "macaroons_authz", "3p", "discharge", "-l", TP, "--ticket", "AAAA"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "error: give the shared secret with --secret-file FILE or $TOKEN_3P_SHARED_SECRET\n"
    )
