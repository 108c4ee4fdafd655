"""The command line: ``python -m macaroons_authz``."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from macaroons_authz import (
    Action,
    Caveat3P,
    DecodeError,
    Macaroon,
    __version__,
    app_token,
    discharge_ticket,
    encode_token,
    kid_for_key,
    parse_header,
    to_header,
)
from macaroons_authz.cli import main

KEY = bytes(range(32))
NOW = 1_700_000_000
GOLDEN = Path(__file__).parent / "golden" / "inspect_vectors.json"


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str = "", monkeypatch: Any = None
) -> tuple[int, str, str]:
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "root.key"
    path.write_text(KEY.hex() + "\n")
    return str(path)


@pytest.fixture
def header() -> str:
    return to_header(app_token(KEY, 1234, [42], actions=Action.READ, expires_in=3600, now=NOW))


def tail_b64(header: str) -> str:
    # The base64 of the tail's last bytes: what must never be printed.
    data = parse_header(header)[0]
    return encode_token(data)[-20:]


# -- demo, version, usage ---------------------------------------------------------------


def test_demo_shows_the_four_decisions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["demo"], capsys)
    assert code == 0
    decisions = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert [d for d in decisions if d in ("ALLOWED", "DENIED")] == [
        "ALLOWED",
        "DENIED",
        "DENIED",
        "DENIED",
    ]
    assert "unauthorized for app 43" in out
    assert "unauthorized for w on app 42" in out
    assert "token expired at 2026-01-01T01:00:00Z" in out
    assert "UNVERIFIED" in out
    assert 'Apps {"apps":{"42":"r"}}' in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["mint"], ["verify", "--bogus"]])
def test_usage_errors_exit_2_with_one_error_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MACAROONS_AUTHZ_KEY", raising=False)  # ["mint"]: no key
    code, _, err = outcome(argv, capsys)
    assert code == 2
    assert err.splitlines()[-1].startswith("error: ")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "command", ["inspect", "verify", "attenuate", "mint", "scan", "keys", "demo"]
)
def test_every_command_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out
    assert f"python -m macaroons_authz {command}" in out
    assert max(len(line) for line in out.splitlines()) <= 80


# -- inspect ---------------------------------------------------------------------------


def test_inspect_reads_stdin_and_never_prints_the_token(
    header: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(["inspect", "--now", str(NOW + 60)], capsys, header, monkeypatch)
    assert code == 0
    assert out.startswith("UNVERIFIED")
    assert "fm2_ permission" in out
    assert 'Apps {"apps":{"42":"r"}}' in out
    assert "(expires in 59m)" in out
    assert tail_b64(header) not in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_inspect_marks_expired_unknown_malformed_and_oauth(
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = Macaroon.new(b"k", "https://api.fly.io/v1", KEY)
    raw = token.encode()
    # Splice in an unknown caveat type 2**48+5 whose body is a str.
    data = raw[:-35] + b"\x92\xcf" + (2**48 + 5).to_bytes(8, "big") + b"\xa1x" + raw[-34:]
    data = data.replace(b"\x90", b"\x92", 1)
    unknown = Macaroon.decode(data)
    expired = app_token(KEY, 1, [2], expires_in=10, now=NOW)
    oauth = "fo1_" + base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
    truncated = encode_token(expired)[:-20]
    header = to_header(unknown, expired, oauth, truncated)
    code, out, _ = run(["inspect", header, "--now", str(NOW + 3600)], capsys)
    assert code == 0
    assert f"unknown caveat type {2**48 + 5}" in out
    assert "expired 59m 50s ago" in out
    assert "Fly OAuth token (not a macaroon)" in out
    assert "token 4: fm2_ malformed\n  error     truncated at byte" in out


def test_inspect_json_matches_the_golden_file(
    spec_vectors: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    header = spec_vectors["deterministic"]["C"]["header"]
    code, out, _ = run(["inspect", header, "--json", "--now", "1700000100"], capsys)
    assert code == 0
    doc = json.loads(out)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(doc, indent=2) + "\n")
    assert doc == json.loads(GOLDEN.read_text())
    # The golden file agrees with the Go library's JSON for the same tokens.
    c = spec_vectors["deterministic"]["C"]
    root = json.loads(Macaroon.decode(bytes.fromhex(c["root_token_hex"])).to_json())
    assert doc["tokens"][0]["caveats"] == root["caveats"]
    assert [t["role"] for t in doc["tokens"]] == ["permission", "discharge"]
    assert doc["tokens"][1]["discharge_of"] == [1]


# -- verify ----------------------------------------------------------------------------


def test_verify_allows_denies_and_explains(
    header: str, key_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["verify", header, "--key-file", key_file, "--now", str(NOW + 1)]
    code, out, _ = run([*base, "--access", '{"orgid":1234,"appid":42,"action":"r"}'], capsys)
    assert (code, out.split()[0]) == (0, "ALLOWED")
    code, out, _ = run(
        [*base, "--access", '{"orgid":1234,"appid":43,"action":"w"}', "--explain"], capsys
    )
    assert code == 1
    assert "DENIED" in out
    assert "  - unauthorized for app 43" in out
    assert "  - unauthorized for w on this token (Action)" in out
    assert "-> pass" in out
    assert "-> FAIL" in out
    assert tail_b64(header) not in out
    code, out, _ = run(["verify", header, "--key-file", key_file], capsys)
    assert (code, out.split()[0]) == (0, "VALID")


def test_verify_with_the_wrong_key_is_not_authentic(
    header: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(bytes(32))
    code, out, err = run(["verify", header, "--key-file", str(other)], capsys)
    assert code == 1
    assert "NOT AUTHENTIC" in out
    assert err == ""


def test_verify_key_from_the_environment(
    header: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MACAROONS_AUTHZ_KEY", KEY.hex())
    code, out, _ = run(["verify", header], capsys)
    assert (code, out.split()[0]) == (0, "VALID")
    monkeypatch.delenv("MACAROONS_AUTHZ_KEY")
    code, _, err = run(["verify", header], capsys)
    assert code == 2
    assert err.startswith("error: give --key-file")


@pytest.mark.parametrize(
    ("token", "access", "message"),
    [
        ("not-a-token", None, "error: cannot read the tokens"),
        ("fm2_AAAA", None, "error: cannot read the tokens"),
        (None, "{bad json", "error: bad --access"),
        (None, '{"orgid":"x"}', "error: bad --access"),
        (None, "@/nonexistent/file", "error: cannot read"),
    ],
)
def test_verify_bad_input_is_a_usage_error(
    header: str,
    key_file: str,
    token: str | None,
    access: str | None,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["verify", token or header, "--key-file", key_file]
    if access:
        argv += ["--access", access]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith(message)
    assert len(err.splitlines()) == 1


# -- attenuate, mint, keys -----------------------------------------------------------------


def test_attenuate_adds_flyctl_json_caveats_to_permission_tokens(
    header: str, tmp_path: Path, key_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    caveats = tmp_path / "caveats.json"
    caveats.write_text('[{"type":"Machines","body":{"machines":{"m1":"r"}}}]')
    code, out, _ = run(["attenuate", header, "-f", str(caveats)], capsys)
    assert code == 0
    new = out.strip()
    assert new.startswith("FlyV1 fm2_")
    m = Macaroon.decode(parse_header(new)[0])
    assert [c.name for c in m.unsafe_caveats][-1] == "Machines"
    access = '{"orgid":1234,"appid":42,"machine":"m2","action":"r"}'
    code, out, _ = run(
        ["verify", new, "--key-file", key_file, "--access", access, "--now", str(NOW)], capsys
    )
    assert code == 1
    caveats.write_text('[{"type":"Machines","body":{"nope":1}}]')
    code, _, err = run(["attenuate", header, "-f", str(caveats)], capsys)
    assert code == 2
    assert err.startswith("error: ")


def test_mint_and_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_path = tmp_path / "new.key"
    code, out, _ = run(["keys", "new", str(key_path)], capsys)
    assert code == 0
    kid = out.strip()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = bytes.fromhex(key_path.read_text().strip())
    assert kid == kid_for_key(key).hex()
    code, _, err = run(["keys", "new", str(key_path)], capsys)
    assert code == 2
    assert "refusing to overwrite" in err

    argv = ["mint", "--key-file", str(key_path), "--kid", kid, "--org", "7", "--app", "8"]
    code, out, _ = run([*argv, "--actions", "rw", "--expires-in", "2h", "--now", str(NOW)], capsys)
    assert code == 0
    m = Macaroon.decode(parse_header(out.strip())[0])
    assert m.nonce.kid == bytes.fromhex(kid)
    assert [c.name for c in m.verify(key)] == ["Organization", "Action", "Apps", "ValidityWindow"]

    base = ["mint", "--key-file", str(key_path), "--kid", kid, "--org", "7"]
    code, _, err = run([*base, "--machine", "m1"], capsys)
    assert code == 2
    assert err == "error: --machine needs --app (Machines belong to apps)\n"
    code, _, err = run(["mint", "--key-file", str(key_path), "--kid", kid], capsys)
    assert code == 2
    assert err.startswith("error: give --org")
    for bad, message in [
        (["--actions", "rwx"], "actions are letters"),
        (["--expires-in", "soon"], "not a duration"),
    ]:
        with pytest.raises(SystemExit) as info:
            main([*argv, *bad])
        assert info.value.code == 2
        assert message in capsys.readouterr().err


# -- the real module in a subprocess ------------------------------------------------------


def cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "macaroons_authz", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_subprocess_inspect_verify_and_exit_codes(header: str, key_file: str) -> None:
    done = cli("inspect", "-", stdin=header)
    assert done.returncode == 0
    assert done.stdout.startswith("UNVERIFIED")
    assert tail_b64(header) not in done.stdout
    done = cli("verify", "--key-file", key_file, stdin=header)
    assert (done.returncode, done.stdout.split()[0]) == (0, "VALID")
    done = cli(
        "verify", "--key-file", key_file, "--access", '{"orgid":1,"action":"r"}', stdin=header
    )
    assert done.returncode == 1
    done = cli("verify", "--key-file", key_file, stdin="garbage")
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr
    done = cli("demo")
    assert done.returncode == 0
    assert done.stderr == ""


# -- scan ----------------------------------------------------------------------------------


def test_scan_reports_tokens_without_printing_them(
    tmp_path: Path, header: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "settings.py").write_text(f'TOKEN = "{header}"\n')
    (tmp_path / "README.md").write_text("Use `FlyV1 fm2_<token>` in the header.\n")
    code, out, err = run(["scan", str(tmp_path)], capsys)
    assert code == 1
    assert err == ""
    assert f"{tmp_path}/src/settings.py:1:16  token fm2_ (header)" in out
    m = Macaroon.decode(parse_header(header)[0])
    assert f"token id {m.nonce.uuid}" in out
    assert "1 token(s), 0 malformed" in out
    assert tail_b64(header) not in out
    code, out, _ = run(["scan", str(tmp_path), "--json"], capsys)
    assert code == 1
    doc = json.loads(out)
    assert [(f["line"], f["column"], f["kind"]) for f in doc["findings"]] == [(1, 16, "token")]
    assert tail_b64(header) not in out


def test_scan_exit_codes_for_clean_trees_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "clean.txt").write_text("nothing to see\n")
    code, out, _ = run(["scan", str(tmp_path)], capsys)
    assert (code, out) == (0, "0 token(s), 0 malformed, 0 opaque (fo1_) found\n")
    code, _, err = run(["scan", str(tmp_path / "missing")], capsys)
    assert code == 2
    assert err.startswith("error: ")


def test_subprocess_scan(tmp_path: Path, header: str) -> None:
    (tmp_path / "leak.log").write_text(f"curl -H 'Authorization: {header}'\n")
    done = cli("scan", str(tmp_path))
    assert done.returncode == 1
    assert "token fm2_ (header)" in done.stdout
    assert tail_b64(header) not in done.stdout


def test_broken_pipe_is_not_an_error(header: str) -> None:
    # `inspect --json | head -1`: the reader leaves after one line.
    done = subprocess.run(
        f"{sys.executable} -m macaroons_authz inspect --json - | head -n 1",
        input=",".join([header.removeprefix("FlyV1 ")] * 200),
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.stdout == "{\n"
    assert done.stderr == ""


def test_ctrl_c_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import macaroons_authz.cli as cli_module

    def interrupted(*_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_cmd_demo", interrupted)
    assert main(["demo"]) == 130
    assert capsys.readouterr().err == ""


# -- issue 16: keys and KIDs, inspect, small things ------------------------------------

OTHER_KEY = bytes(range(32, 64))
API = "https://api.fly.io/v1"
AUTH = "https://auth.example.com"
TP_KEY = bytes(range(64, 96))


def outcome(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The exit status, whether main returns it or argparse exits with it."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else -1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version_names_the_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    assert outcome(["--version"], capsys) == (0, f"macaroons-authz {__version__}\n", "")
    assert __version__ == "0.1.0"


def test_keys_new_explains_its_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = outcome(["keys", "new", "--help"], capsys)
    assert code == 0
    assert "FILE        where to write the key" in out


def test_mint_derives_the_kid_from_the_key(
    key_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    kid = kid_for_key(KEY).hex()
    for extra in ([], ["--kid", kid], ["--kid", kid.upper()]):
        code, out, _ = outcome(["mint", "--key-file", key_file, "--org", "7", *extra], capsys)
        assert code == 0
        m = Macaroon.decode(parse_header(out.strip())[0])
        assert m.nonce.kid == kid_for_key(KEY)
    code, out, err = outcome(["mint", "--key-file", key_file, "--org", "7", "--kid", "00"], capsys)
    assert (code, out) == (2, "")
    assert err == f"error: --kid 00 is not this key's key id {kid}\n"


def token_of(kid: bytes, key: bytes) -> str:
    m = Macaroon.new(kid, API, key)
    return to_header(m)


def test_verify_refuses_a_kid_that_is_not_the_keys(
    key_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Signed with the right key, but under KID 00: a keyring would not find
    # the key, so the command line does not either (it said VALID).
    code, out, _ = outcome(["verify", token_of(b"\x00", KEY), "--key-file", key_file], capsys)
    assert code == 1
    assert out.startswith("NOT AUTHENTIC")
    assert f"  - token's key id 00 is not this key's {kid_for_key(KEY).hex()}\n" in out
    # Another key's token, under that key's own KID.
    other = token_of(kid_for_key(OTHER_KEY), OTHER_KEY)
    code, out, _ = outcome(["verify", other, "--key-file", key_file], capsys)
    assert code == 1
    assert f"token's key id {kid_for_key(OTHER_KEY).hex()} is not this key's" in out


def test_verify_with_a_wrong_key_says_so(key_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    # This key's KID, another key's signature.
    forged = token_of(kid_for_key(KEY), OTHER_KEY)
    code, out, _ = outcome(["verify", forged, "--key-file", key_file], capsys)
    assert code == 1
    assert out.splitlines()[1] == "  - signature does not match this key"
    assert "macaroon verify" not in out


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "my_secret_value_123",
        "Bearer sk_live_0123456789abcdef0123456789abcdef",
        "fm2_xxx",
        "FlyV1 fm2_<token>",
        '{"token": "ghp_0123456789abcdefghijklmnopqrstuvwxyz"}',
    ],
)
def test_inspect_refuses_input_that_is_no_token(
    text: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for argv, stdin in (
        (["inspect", text], ""),
        (["inspect", "-"], text),
        (["inspect", "--json", text], ""),
    ):
        code, out, err = run(argv, capsys, stdin, monkeypatch)
        assert (code, out) == (2, "")
        assert err == (
            "error: no token in the input (tokens start with fm2_, fm1r_, fm1a_ or fo1_)\n"
        )


def token_ids(out: str) -> list[str]:
    return [t["token_id"] for t in json.loads(out)["tokens"]]


def test_inspect_accepts_what_the_scanner_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    a = encode_token(Macaroon.new(kid_for_key(KEY), API, KEY))
    b = encode_token(Macaroon.new(kid_for_key(KEY), API + "/x", KEY))  # another length
    ids = [str(Macaroon.decode(parse_header(t)[0]).nonce.uuid) for t in (a, b)]
    forms = [
        f'"{a},{b}"',
        f'FLY_API_TOKEN="FlyV1 {a},{b}"',
        f"export FLY_API_TOKEN={a},{b}",
        json.dumps({"token": f"FlyV1 {a},{b}"}).replace("/", "\\/"),
        f"FlyV1 {a}{b}",
        f"{a}{b}",
        f"Authorization: FlyV1 {a}, {b}",
    ]
    assert any("=" not in t for t in (a, b))  # one glued on without padding
    for text in forms:
        code, out, err = outcome(["inspect", "--json", text], capsys)
        assert (code, err) == (0, "")
        assert token_ids(out) == ids, text


@pytest.fixture
def three_party() -> tuple[str, str, str]:
    """A permission token with a third-party caveat, its discharge, and a stray proof."""
    perm = Macaroon.new(kid_for_key(KEY), API, KEY)
    perm.add_3p(TP_KEY, AUTH)
    (ticket,) = perm.third_party_tickets()[AUTH]
    _, dis = discharge_ticket(TP_KEY, AUTH, ticket)
    dis.bind(perm)
    other = Macaroon.new(kid_for_key(KEY), API, KEY)
    other.add_3p(TP_KEY, AUTH)
    _, stray = discharge_ticket(TP_KEY, AUTH, other.third_party_tickets()[AUTH][0])
    return encode_token(perm), encode_token(dis), encode_token(stray)


def test_inspect_labels_discharges_of_their_token(
    three_party: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    perm, dis, stray = three_party
    code, out, _ = outcome(["inspect", f"FlyV1 {perm},{dis},{stray}"], capsys)
    assert code == 0
    headings = [line for line in out.splitlines() if line.startswith("token ")]
    assert headings == [
        "token 1: fm2_ permission",
        "token 2: fm2_ discharge of token 1",
        "token 3: fm2_ proof",
    ]
    assert f"  3P        {AUTH}: discharged by token 2\n" in out
    assert "needs" not in out
    code, out, _ = outcome(["inspect", "--json", f"FlyV1 {perm},{dis},{stray}"], capsys)
    doc = json.loads(out)["tokens"]
    assert [(t["role"], t.get("discharge_of")) for t in doc] == [
        ("permission", None),
        ("discharge", [1]),
        ("proof", None),
    ]
    assert doc[0]["third_parties"] == [{"location": AUTH, "discharged_by": 2}]
    # Without its discharge, the permission token needs one.
    code, out, _ = outcome(["inspect", perm], capsys)
    assert f"  needs     a discharge from {AUTH}\n" in out


def test_inspect_names_third_party_blobs_in_text_and_keeps_them_in_json(
    three_party: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    perm, dis, _ = three_party
    m = Macaroon.decode(parse_header(perm)[0])
    (cav,) = m.unsafe_caveats.of_type(Caveat3P)
    blobs = {"VerifierKey": cav.verifier_key, "Ticket": cav.ticket}
    code, out, _ = outcome(["inspect", f"{perm},{dis}"], capsys)
    assert code == 0
    for name, blob in blobs.items():
        assert blob is not None
        assert base64.b64encode(blob).decode()[:16] not in out
        named = f'"{name}":"{len(blob)} bytes, sha256 {hashlib.sha256(blob).hexdigest()[:8]}"'
        assert named in out
    # The discharge's KID is the ticket: named the same way.
    assert cav.ticket is not None
    kid_line = (
        f"  kid       {len(cav.ticket)} bytes, sha256 {hashlib.sha256(cav.ticket).hexdigest()[:8]}"
    )
    assert kid_line in out.splitlines()
    code, out, _ = outcome(["inspect", "--json", f"{perm},{dis}"], capsys)
    body = json.loads(out)["tokens"][0]["caveats"][0]["body"]
    assert body["VerifierKey"] == base64.b64encode(blobs["VerifierKey"] or b"").decode()
    assert body["Ticket"] == base64.b64encode(blobs["Ticket"] or b"").decode()


def test_inspect_prints_a_caveats_json_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    token = app_token(KEY, 1234, list(range(1000, 1012)), actions=Action.READ)
    code, out, _ = outcome(["inspect", to_header(token)], capsys)
    assert code == 0
    apps = {"apps": {str(a): "r" for a in range(1000, 1012)}}
    line = "  caveat    Apps " + json.dumps(apps, separators=(",", ":"))
    assert line in out.splitlines()
    assert len(line) > 80


def test_decode_says_a_cut_token_is_truncated() -> None:
    # The core's message (it said "malformed MessagePack: ValueError").
    data = app_token(KEY, 1234, [42], actions=Action.READ, expires_in=3600, now=NOW).encode()
    for n in (1, 40, len(data) - 1):
        with pytest.raises(DecodeError, match=r"^malformed MessagePack: truncated$"):
            Macaroon.decode(data[:n])


def test_inspect_says_where_a_token_is_truncated(capsys: pytest.CaptureFixture[str]) -> None:
    token = app_token(KEY, 1234, [42], actions=Action.READ, expires_in=3600, now=NOW)
    data = token.encode()
    text = encode_token(data)
    tail_start = len(data) - 34  # c4 20 and 32 bytes
    cases = [
        (text[:100], "truncated at byte 72 of the token, in its caveats"),  # 4-character groups
        (text[:102], "truncated at byte 72 of the token, in its caveats"),  # inside a group
        (
            encode_token(data[: tail_start + 10]),
            f"truncated at byte {tail_start + 10} of the token, in its tail",
        ),
    ]
    for cut, message in cases:
        code, out, err = outcome(["inspect", cut], capsys)
        assert (code, err) == (0, "")
        assert "token 1: fm2_ malformed" in out
        assert f"  error     {message}\n" in out
        assert "ValueError" not in out
        code, out, _ = outcome(["inspect", "--json", cut], capsys)
        assert json.loads(out)["tokens"] == [
            {"label": "fm2_", "role": "malformed", "error": message}
        ]


def test_attenuate_with_nothing_new_says_so(
    header: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    present = Macaroon.decode(parse_header(header)[0]).unsafe_caveats
    for content in ("[]", present.to_json()):
        caveats = tmp_path / "caveats.json"
        caveats.write_text(content)
        code, out, err = outcome(["attenuate", header, "-f", str(caveats)], capsys)
        assert code == 0
        assert out == header + "\n"
        assert err == "note: nothing new to add: the tokens already hold every caveat given\n"
