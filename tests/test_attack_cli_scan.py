"""Attacks on the command line and the leak scanner (issue 15, items 5, 6, 9 and 10).

Each test reproduces an attack the adversarial review found: a token
echoed by an argument error, a scan that followed symbolic links out of
its tree, tracebacks from bad files and non-finite times, and deep JSON
that escaped the library's error tree.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macaroons_authz import (
    Action,
    AlertVerificationError,
    GitHubPublicKeys,
    Macaroon,
    _msgpack,
    app_token,
    classify_github_alert,
    encode_token,
    parse_header,
    scan_paths,
    to_header,
    verify_github_alert,
)
from macaroons_authz.caveats._base import UnregisteredCaveat
from macaroons_authz.caveats.registry import DEFAULT_REGISTRY
from macaroons_authz.cli import MAX_INPUT, main
from macaroons_authz.leaks import REDACTED, redact_tokens
from tests.test_leaks import GitHub

KEY = bytes(range(32))
OTHER_KEY = bytes(range(32, 64))
NOW = 1_700_000_000
ACCESS = '{"orgid":1234,"appid":42,"action":"r"}'
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mint(key: bytes = KEY, app: int = 42) -> str:
    """A token string (``fm2_...``), minted on a throw-away key."""
    token = app_token(key, 1234, [app], actions=Action.READ, expires_in=3600, now=NOW)
    return encode_token(parse_header(to_header(token))[0])


TOKEN = mint()
TOKEN2 = mint(app=43)
OUTSIDE = mint(OTHER_KEY)


def leaked(text: str, *tokens: str) -> bool:
    """Whether any 12 consecutive characters of a token's payload appear in *text*."""
    for token in tokens:
        payload = token.partition("_")[2]
        if any(payload[i : i + 12] in text for i in range(len(payload) - 11)):
            return True
    return False


def call(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process: exit status (argparse's exits too), stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    real = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else -1
    finally:
        sys.stdout, sys.stderr = real
    return code, out.getvalue(), err.getvalue()


def assert_one_error(code: int, err: str, *tokens: str) -> None:
    assert code == 2
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1
    assert err.splitlines()[-1].startswith("error: ")
    assert "Traceback" not in err
    assert not leaked(err, *tokens)


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "root.key"
    path.write_text(KEY.hex() + "\n")
    return str(path)


# -- item 9: argument errors never echo a token ----------------------------------------


def test_redact_tokens() -> None:
    payload = TOKEN.partition("_")[2]
    assert redact_tokens(f"unrecognized arguments: {TOKEN}") == (
        f"unrecognized arguments: fm2_{REDACTED}"
    )
    assert redact_tokens(f"FlyV1 {TOKEN},{TOKEN2}") == f"FlyV1 fm2_{REDACTED},fm2_{REDACTED}"
    json_escaped = TOKEN.replace("/", "\\/")
    assert redact_tokens(f"x={json_escaped}!") == f"x=fm2_{REDACTED}!"
    # A payload without its label, alone or after a scheme.
    assert redact_tokens(f"'{payload}'") == f"'{REDACTED}'"
    assert redact_tokens("FlyV1 garbage-credentials") == f"FlyV1 {REDACTED}"
    assert redact_tokens("fo1_" + "a" * 43) == f"fo1_{REDACTED}"
    # Other labels keep their label; text that is no token is untouched.
    for label in ("fm1r_", "fm1a_"):
        assert redact_tokens(label + payload) == label + REDACTED
    for text in ("cannot read /home/someone/projects/a-long/path/settings.json", "fm2_", ""):
        assert redact_tokens(text) == text


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", TOKEN, TOKEN2],  # the comma forgotten: the review's case
        ["inspect", f"FlyV1 {TOKEN}", f"FlyV1 {TOKEN2}"],
        ["inspect", TOKEN, TOKEN2.partition("_")[2]],  # the label forgotten too
        ["inspect", "--bogus", TOKEN],
        ["inspect", f"--location={TOKEN}", "--json", "extra", TOKEN2],
        ["inspect", "--now", TOKEN],
        [TOKEN],  # a token where the command goes: "invalid choice"
        ["verify", "--key-file", "k", TOKEN, TOKEN2],
        ["verify", f"--now={TOKEN}", TOKEN],
        ["mint", "--kid", "00", "--org", TOKEN],
        ["mint", "--kid", "00", "--app", TOKEN],
        ["mint", "--kid", "00", "--actions", TOKEN],
        ["mint", "--kid", "00", "--expires-in", TOKEN],
        ["mint", "--kid", "00", "--role", TOKEN],
        ["attenuate", TOKEN],  # -f missing
        ["keys", "new", "f", TOKEN],
        ["scan", "--json", "--bogus", TOKEN],
    ],
)
def test_argument_errors_redact_tokens(argv: list[str]) -> None:
    code, out, err = call(argv)
    assert out == ""
    assert_one_error(code, err, TOKEN, TOKEN2)


def test_usage_errors_from_commands_redact_tokens(tmp_path: Path, key_file: str) -> None:
    cases = [
        # A token ending in "=" leaves no KEYFILE after the last "=".
        ["verify", "--key-file", key_file, "--trusted-3p", f"x={TOKEN}", TOKEN],
        ["verify", "--key-file", TOKEN, TOKEN],  # the key file forgotten
        ["verify", "--key-file", key_file, "--access", f"@{TOKEN}", TOKEN],
        ["verify", "--key-file", key_file, "--access", json.dumps({"orgid": TOKEN}), TOKEN],
        ["attenuate", "-f", TOKEN, TOKEN],
        ["scan", str(tmp_path / TOKEN.replace("/", "_"))],
    ]
    assert TOKEN.endswith("=")
    for argv in cases:
        code, out, err = call(argv)
        assert out == ""
        assert_one_error(code, err, TOKEN)


def test_subprocess_comma_forgotten_prints_no_token() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "macaroons_authz", "inspect", TOKEN, TOKEN2],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == f"error: unrecognized arguments: fm2_{REDACTED}"
    assert not leaked(done.stderr, TOKEN, TOKEN2)


def test_error_lines_escape_control_characters() -> None:
    code, _, err = call(["scan", "missing\nerror: spoofed"])
    assert_one_error(code, err)
    assert "missing\\x0aerror: spoofed" in err


# -- items 5 and 6: times, files and JSON on the command line ---------------------------


@pytest.mark.parametrize("now", ["nan", "NaN", "inf", "-inf", "1e400", "-1", "1e16", "x"])
@pytest.mark.parametrize("command", ["inspect", "verify", "mint"])
def test_non_finite_now_is_refused(now: str, command: str, key_file: str) -> None:
    argv = {
        "inspect": ["inspect", TOKEN],
        "verify": ["verify", "--key-file", key_file, "--access", ACCESS, TOKEN],
        "mint": ["mint", "--key-file", key_file, "--kid", "00", "--org", "1", "--expires-in", "1d"],
    }[command]
    code, out, err = call([*argv, f"--now={now}"])
    assert out == ""
    assert_one_error(code, err, TOKEN)
    assert "--now" in err


def test_verify_now_nan_no_longer_allows_an_expired_token(key_file: str) -> None:
    base = ["verify", "--key-file", key_file, "--access", ACCESS, TOKEN]
    code, out, _ = call([*base, f"--now={NOW + 7200}"])
    assert (code, out.split()[0]) == (1, "DENIED")
    code, out, err = call([*base, "--now=nan"])  # was ALLOWED, exit 0
    assert out == ""
    assert_one_error(code, err)


@pytest.mark.parametrize(
    "argv",
    [
        ["--org", "1", "--expires-in", "99999999999999999999999d"],  # overflowed the packer
        ["--org", "1", "--expires-in", "110000000000d"],  # over 2**53 seconds
        ["--org", str(2**64)],
        ["--org", "-1"],
        ["--org", "1", "--app", str(2**64)],
        ["--org", "\u0661\u0662"],  # int() takes Arabic-Indic digits; an id does not
        ["--org", "1", "--expires-in", "\u0661\u0662d"],
    ],
)
def test_mint_out_of_range_numbers(argv: list[str], key_file: str) -> None:
    code, out, err = call(["mint", "--key-file", key_file, "--kid", "00", *argv])
    assert out == ""
    assert_one_error(code, err)


def test_mint_largest_numbers(key_file: str) -> None:
    argv = ["mint", "--key-file", key_file, "--org", str(2**64 - 1)]
    code, out, _ = call([*argv, "--now=0", "--expires-in", f"{2**53}s"])
    assert code == 0
    assert Macaroon.decode(parse_header(out.strip())[0]).location


BAD_FILES = {
    "latin1": b'[{"type":"Machines","body":{"machines":{"caf\xe9":"r"}}}]',
    "utf16": '{"orgid":1}'.encode("utf-16"),
    "deep_array": b"[" * 100_000,
    "deep_object": b'{"a":' * 100_000,
    "deep_in_body": b'[{"type":"Machines","body":' + b"[" * 100_000,
}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
@pytest.mark.parametrize("command", ["attenuate", "verify"])
def test_bad_files_are_one_error_line(
    content: bytes,
    command: str,
    tmp_path: Path,
    key_file: str,
) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(content)
    argv = (
        ["attenuate", "-f", str(path), TOKEN]
        if command == "attenuate"
        else ["verify", "--key-file", key_file, "--access", f"@{path}", TOKEN]
    )
    code, out, err = call(argv)
    assert out == ""
    assert_one_error(code, err, TOKEN)


def test_oversized_input_is_refused(
    tmp_path: Path, key_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.json"
    path.write_text("[" + " " * MAX_INPUT + "]")
    code, _, err = call(["attenuate", "-f", str(path), TOKEN])
    assert_one_error(code, err)
    assert "longer than" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(" " * (MAX_INPUT + 1)))
    code, _, err = call(["inspect"])
    assert_one_error(code, err)


def test_non_utf8_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"FlyV1 \xff\xfe"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, err = call(["inspect"])
    assert out == ""
    assert_one_error(code, err)
    assert "standard input is not UTF-8" in err


# -- fuzzing: argument errors, files ----------------------------------------------------

token_like = st.sampled_from([TOKEN, TOKEN2, f"FlyV1 {TOKEN}", f"{TOKEN},{TOKEN2}"]) | st.builds(
    lambda label, raw: label + base64.b64encode(raw).decode(),
    st.sampled_from(["fm2_", "fm1r_", "fm1a_", "fo1_"]),
    st.binary(min_size=24, max_size=96),
)
options = st.sampled_from(
    ["--bogus", "--now", "--org", "--app", "--kid", "--actions", "--expires-in", "--role", "-f"]
)


@FUZZ
@given(
    command=st.sampled_from(["inspect", "verify", "attenuate", "mint", "scan", "keys", "demo"]),
    pieces=st.lists(token_like | options, min_size=1, max_size=5),
    secret=token_like,
)
def test_fuzz_argument_errors_never_echo_tokens(
    command: str, pieces: list[str], secret: str
) -> None:
    # A stray token always follows an option that takes no such value, or
    # is one positional too many: argparse must refuse it.
    argv = [command, *pieces, "--bogus", secret]
    code, _, err = call(argv)
    tokens = [p for p in [*pieces, secret] if not p.startswith("-")]
    assert_one_error(code, err, *tokens)


deep_json = st.builds(
    lambda opener, n, tail: opener * n + tail,
    st.sampled_from([b"[", b'{"a":', b'[{"type":"Machines","body":', b'{"orgid":']),
    st.integers(1, 60_000),
    st.binary(max_size=8),
)
bad_bytes = st.builds(
    lambda head, bad, tail: head + bad + tail,
    st.sampled_from([b"", b"[", b'{"orgid":"', b'[{"type":"Apps","body":{"apps":{"']),
    st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]),
    st.binary(max_size=16),
)


@FUZZ
@given(content=deep_json | bad_bytes | st.binary(max_size=64), command=st.sampled_from([0, 1]))
def test_fuzz_bad_files_give_one_error_line(content: bytes, command: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "input.json")
        key = os.path.join(tmp, "root.key")
        Path(path).write_bytes(content)
        Path(key).write_text(KEY.hex())
        argv = (
            ["attenuate", "-f", path, TOKEN]
            if command == 0
            else ["verify", "--key-file", key, "--access", f"@{path}", TOKEN]
        )
        code, out, err = call(argv)
    # Random bytes may be valid JSON: then the command answers (0 or 1).
    if code == 2:
        assert_one_error(code, err, TOKEN)
    else:
        assert code in (0, 1) and err == ""
    assert not leaked(out, TOKEN) or command == 0


# -- item 6: deep JSON in GitHub alerts ----------------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("closed", [False, True])
def test_github_deep_json_is_refused(depth: int, closed: bool) -> None:
    deep = "[" * depth + ("]" * depth if closed else "")
    refused = r"(is not valid JSON|JSON is nested)"
    for document in (deep, deep.encode(), '{"public_keys":' + deep + "}"):
        with pytest.raises(AlertVerificationError, match="public keys document " + refused):
            GitHubPublicKeys.from_json(document)
    github = GitHub()
    body = deep.encode()
    with pytest.raises(AlertVerificationError, match="alert body " + refused):
        verify_github_alert(body, github.sign(body), github.document())


def test_github_alert_token_with_a_lone_surrogate() -> None:
    github = GitHub()
    body = b'[{"token": "fm2_\\ud800", "type": "fly_token"}]'
    (match,) = verify_github_alert(body, github.sign(body), github.document())
    (feedback,) = classify_github_alert([match], lambda kid: None)
    assert feedback.label == "false_positive"
    assert len(feedback.token_hash) == 64


# -- item 10: the scanner stays inside its trees ---------------------------------------


def uuid_of(token: str) -> str:
    return str(Macaroon.decode(base64.b64decode(token.partition("_")[2])).nonce.uuid)


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    """``root/`` with a token, links out of it and a loop; ``outside/`` with another token."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "deeper").mkdir(parents=True)
    (outside / "secret.txt").write_text(f"T = {OUTSIDE}\n")
    (outside / "deeper" / "more.txt").write_text(f"T = {OUTSIDE}\n")
    (root / "sub").mkdir(parents=True)
    (root / "inside.txt").write_text(f"T = {TOKEN}\n")
    (root / "link_file").symlink_to(outside / "secret.txt")
    (root / "link_dir").symlink_to(outside, target_is_directory=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "sub" / "link_inside").symlink_to(root / "inside.txt")
    (root / "sub" / "dangling").symlink_to(tmp_path / "nowhere")
    (root / "sub" / "relative_out").symlink_to(Path("..") / ".." / "outside" / "secret.txt")
    return root, outside


def found(paths: Any, **kwargs: Any) -> list[tuple[str | None, str | None]]:
    return [(f.path, f.token_id.rnd) for f in scan_paths(paths, **kwargs)]


def rnd(token: str) -> str:
    return (Macaroon.decode(base64.b64decode(token.partition("_")[2])).nonce.rnd or b"").hex()


def test_scan_does_not_follow_links_by_default(trees: tuple[Path, Path]) -> None:
    root, _ = trees
    assert found(root) == [(str(root / "inside.txt"), rnd(TOKEN))]


def test_scan_follows_links_only_inside_the_roots(trees: tuple[Path, Path]) -> None:
    root, outside = trees
    inside = (str(root / "inside.txt"), rnd(TOKEN))
    # Out-of-tree targets stay unread, the loop ends, inside.txt is read once.
    assert found(root, follow_symlinks=True) == [inside]
    # With outside/ among the roots, its files are read, each once.
    both = found([root, outside], follow_symlinks=True)
    assert both == [
        inside,
        (str(outside / "secret.txt"), rnd(OUTSIDE)),
        (str(outside / "deeper" / "more.txt"), rnd(OUTSIDE)),
    ]


def test_scan_a_link_named_as_a_root_is_read(trees: tuple[Path, Path]) -> None:
    root, _ = trees
    assert found(root / "link_file") == [(str(root / "link_file"), rnd(OUTSIDE))]
    got = found(root / "link_dir")
    assert got == [
        (str(root / "link_dir" / "secret.txt"), rnd(OUTSIDE)),
        (str(root / "link_dir" / "deeper" / "more.txt"), rnd(OUTSIDE)),
    ]


def test_scan_a_deep_link_chain_and_loop_end(tmp_path: Path) -> None:
    # a/b/c/... each holding a link back to every ancestor.
    d = tmp_path
    for i in range(30):
        d = d / f"d{i}"
        d.mkdir()
        (d / "up").symlink_to(tmp_path, target_is_directory=True)
    (d / "leak.txt").write_text(TOKEN)
    assert len(found(tmp_path, follow_symlinks=True)) == 1
    assert len(found(tmp_path)) == 1


def test_cli_scan_stays_inside_the_tree(trees: tuple[Path, Path]) -> None:
    root, _ = trees
    for extra in ([], ["--follow-symlinks"]):
        code, out, err = call(["scan", str(root), *extra])
        assert code == 1
        assert err == ""
        assert uuid_of(TOKEN) in out
        assert uuid_of(OUTSIDE) not in out
        assert "1 token(s)" in out
        code, out, _ = call(["scan", "--json", str(root), *extra])
        doc = json.loads(out)
        assert [f["path"] for f in doc["findings"]] == [str(root / "inside.txt")]


def test_inspect_a_huge_google_user_id() -> None:
    # 900 bytes of id: more digits than Python prints; was a ValueError traceback.
    # add() refuses such a caveat now, so an unknown type is added and its
    # type number (a one-byte fixint) rewritten to GoogleUserID's 25.
    unknown = 100
    assert DEFAULT_REGISTRY.lookup(unknown) is None
    body = _msgpack.pack(b"\x09" * 900)
    m = Macaroon.new(b"kid", "https://api.fly.io/v1", KEY)
    m.add(UnregisteredCaveat(unknown, raw=body))
    data = m.encode()
    packed = b"\x92" + _msgpack.pack(unknown) + body
    assert data.count(packed) == 1
    token = encode_token(data.replace(packed, b"\x92\x19" + body))
    for extra in ([], ["--json"]):
        code, out, err = call(["inspect", token, *extra])
        assert (code, err) == (0, "")
        assert "malformed" in out
        assert not leaked(out, token)


def test_cli_scan_file_names_cannot_forge_lines(tmp_path: Path) -> None:
    name = "a\nforged.txt:9:9  token fm2_ (bare)\x1b[2K.txt"
    (tmp_path / name).write_text(f"T = {TOKEN}\n")
    code, out, err = call(["scan", str(tmp_path)])
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert (
        lines[0]
        == f"{tmp_path}/a\\x0aforged.txt:9:9  token fm2_ (bare)\\x1b[2K.txt:1:5  token fm2_ (bare)"
    )
    assert len(lines) == 3


def test_inspect_prints_no_escape_sequences_from_a_token() -> None:
    # A token's location is its author's text; a terminal must not obey it.
    m = Macaroon.new(b"kid", "https://x/\x1b]0;pwned\x07\x1b[2J\nALLOWED token", KEY)
    code, out, err = call(["inspect", encode_token(m.encode())])
    assert (code, err) == (0, "")
    assert "\x1b" not in out and "\x07" not in out
    assert "  location  https://x/\\x1b]0;pwned\\x07\\x1b[2J\\x0aALLOWED token\n" in out
