"""The command line and Fly.io: tokens found as flyctl finds them, and flyctl's kinds (--kind)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from fly_helpers import KEY, NOW, OAUTH, ORG, fly_tokens

from macaroons_authz import (
    Action,
    ActionCaveat,
    Command,
    Commands,
    IfPresent,
    Macaroon,
    Mutations,
    Organization,
    ValidityWindow,
    decode_token,
    org_token,
    to_header,
)
from macaroons_authz.cli import main
from macaroons_authz.fly import machine_exec_token, readonly_token, ssh_token
from macaroons_authz.header import split_header


class Terminal(io.StringIO):
    """A standard input that is a terminal: nothing is read from it."""

    def isatty(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        raise AssertionError("a terminal is not read for a token")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HOME, no Fly.io variables; returns HOME."""
    for name in ("FLY_ACCESS_TOKEN", "FLY_API_TOKEN", "FLY_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def run(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: io.StringIO | str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin) if isinstance(stdin, str) else stdin)
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def session() -> str:
    return fly_tokens().header


def secret_parts(header: str) -> list[str]:
    """The token strings of *header*, each a secret that must not be echoed."""
    return [p.strip().split("_", 1)[1] for p in split_header(header)]


def key_file(home: Path) -> str:
    path = home / "root.key"
    path.write_text(KEY.hex())
    return str(path)


# -- where the token comes from -------------------------------------------------------


def test_inspect_takes_fly_api_token_and_says_so(
    env: Path,
    session: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLY_API_TOKEN", session)
    code, out, err = run(["inspect"], capsys, monkeypatch)
    assert (code, err) == (0, "note: token from FLY_API_TOKEN\n")
    assert "token 1: fm2_ permission" in out and "token 2: fm2_ discharge" in out
    for part in secret_parts(session):
        assert part not in out + err


def test_fly_access_token_comes_before_fly_api_token(
    env: Path, session: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLY_ACCESS_TOKEN", session)
    monkeypatch.setenv("FLY_API_TOKEN", "fm2_not-this-one")
    code, _, err = run(["inspect"], capsys, monkeypatch, Terminal())
    assert (code, err) == (0, "note: token from FLY_ACCESS_TOKEN\n")


def test_inspect_takes_the_config_file_and_names_it(
    env: Path, session: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = env / ".fly" / "config.yml"
    path.parent.mkdir()
    path.write_text(f"access_token: {session}\nsend_metrics: true\n")
    code, out, err = run(["inspect"], capsys, monkeypatch, Terminal())
    assert (code, err) == (0, f"note: token from access_token in {path}\n")
    assert out.startswith("UNVERIFIED")


def test_a_piped_token_or_an_argument_wins_over_discovery(
    env: Path, session: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLY_API_TOKEN", "fm2_not-this-one")
    for argv, stdin in (
        (["inspect"], session),
        (["inspect", session], ""),
        (["inspect", "-"], session),
    ):
        code, out, err = run(argv, capsys, monkeypatch, stdin)
        assert (code, err) == (0, "")
        assert "fm2_ permission" in out
    # '-' means standard input only: empty, it is an error, not a search.
    code, out, err = run(["inspect", "-"], capsys, monkeypatch)
    assert (code, out) == (2, "")
    assert err.startswith("error: no token given") and "note:" not in err


def test_no_token_anywhere_is_one_error_line(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(["verify", "--key-file", key_file(env)], capsys, monkeypatch)
    assert (code, out) == (2, "")
    assert err == (
        "error: no token given (as an argument or on standard input); no Fly.io token: none "
        "given, FLY_ACCESS_TOKEN and FLY_API_TOKEN unset or empty, and no access_token in "
        f"{env}/.fly/config.yml\n"
    )


def test_verify_and_attenuate_use_discovery(
    env: Path, session: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLY_API_TOKEN", session)
    code, out, err = run(["verify", "--key-file", key_file(env)], capsys, monkeypatch)
    assert (code, err) == (0, "note: token from FLY_API_TOKEN\n")
    assert out.startswith("VALID token ")
    code, out, err = run(["attenuate", "--kind", "ssh"], capsys, monkeypatch)
    assert (code, err) == (0, "note: token from FLY_API_TOKEN\n")
    assert out == ssh_token(session) + "\n"


# -- flyctl's kinds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "recipe"),
    [
        (
            ["--kind", "readonly", "--now", str(NOW)],
            lambda h: readonly_token(h, now=NOW),
        ),
        (
            ["--kind", "readonly", "--expiry", "1h", "--now", str(NOW)],
            lambda h: readonly_token(h, expires_in=3600, now=NOW),
        ),
        (["--kind", "machine-exec"], machine_exec_token),
        (
            [
                "--kind",
                "machine-exec",
                "--command",
                "ls -la '/data dir'",
                "--command",
                "uptime",
                "--command-prefix",
                'echo "hi there"',
            ],
            lambda h: machine_exec_token(
                h,
                commands=[["ls", "-la", "/data dir"], ["uptime"]],
                prefixes=[["echo", "hi there"]],
            ),
        ),
        (["--kind", "ssh"], ssh_token),
    ],
)
def test_attenuate_kinds_are_the_recipes(
    argv: list[str],
    recipe: object,
    session: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run(["attenuate", *argv], capsys, monkeypatch, session)
    assert (code, err) == (0, "")
    assert out == recipe(session) + "\n"  # type: ignore[operator]
    assert OAUTH not in out  # flyctl prints the macaroons only


def added(header: str, base: int) -> list[list[object]]:
    """The caveats after the first *base* of each permission token of *header*."""
    tokens = [Macaroon.decode(decode_token(p)) for p in split_header(header)]
    return [list(t.unsafe_caveats)[base:] for t in tokens]


@pytest.mark.parametrize(
    ("argv", "caveats"),
    [
        (["--kind", "readonly"], [[Organization(ORG, Action.READ)]]),
        (
            ["--kind", "machine-exec", "--command", "uptime"],
            [[IfPresent((Commands([Command(("uptime",), exact=True)]),), Action.READ)]],
        ),
        (
            ["--kind", "ssh"],
            [[ActionCaveat(Action.READ)], [Mutations(("issueCertificate", "addWireGuardPeer"))]],
        ),
    ],
)
def test_mint_kinds(
    argv: list[str],
    caveats: list[list[object]],
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = len(org_token(KEY, ORG).unsafe_caveats)
    code, out, err = run(
        ["mint", "--key-file", key_file(env), "--org", str(ORG), *argv], capsys, monkeypatch
    )
    assert (code, err) == (0, "")
    assert added(out.strip(), base) == caveats


def test_mint_readonly_keeps_the_expiry_of_expires_in(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = len(org_token(KEY, ORG).unsafe_caveats)
    argv = ["mint", "--key-file", key_file(env), "--org", str(ORG), "--kind", "readonly"]
    code, out, _ = run([*argv, "--expires-in", "1h", "--now", str(NOW)], capsys, monkeypatch)
    assert code == 0
    assert added(out.strip(), base) == [
        [ValidityWindow(NOW, NOW + 3600), Organization(ORG, Action.READ)]
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kind", "ssh", "-f", "caveats.json"], "give -f CAVEATS.json or --kind KIND"),
        ([], "give -f CAVEATS.json or --kind KIND"),
        (["--kind", "ssh", "--command", "ls"], "--command and --command-prefix go with"),
        (["--kind", "ssh", "--expiry", "1h"], "--expiry goes with --kind readonly"),
        (["--kind", "machine-exec", "--command", "echo 'x"], "cannot split the --command"),
        (["--kind", "ssh", "--location", "https://other"], "--kind makes Fly.io tokens"),
    ],
)
def test_attenuate_kind_mistakes_are_one_error_line(
    argv: list[str],
    message: str,
    session: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run(["attenuate", *argv], capsys, monkeypatch, session)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_kinds_need_exactly_one_permission_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    two = to_header(org_token(KEY, 1), org_token(KEY, 2))
    code, out, err = run(["attenuate", "--kind", "readonly"], capsys, monkeypatch, two)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and "fm2_" not in err
    no_org = to_header(Macaroon.new(b"k", "https://api.fly.io/v1", KEY))
    code, out, err = run(["attenuate", "--kind", "readonly"], capsys, monkeypatch, no_org)
    assert (code, out) == (2, "")
    assert "no org caveats" in err
