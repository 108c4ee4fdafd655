"""The command line: ``python -m macaroons_authz``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from macaroons_authz import __version__
from macaroons_authz.cli import main


def test_demo_shows_the_four_decisions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
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


def test_demo_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "macaroons_authz", "demo"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "ALLOWED" in done.stdout
    assert done.stderr == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err
