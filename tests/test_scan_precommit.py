"""The pre-commit hook (``.pre-commit-hooks.yaml``) run by the real ``pre-commit`` tool.

A throw-away repository uses this project as a hook repository, as users
do (``repo:`` a git URL and a ``rev``): here a throw-away git copy of the
project's files, so the hook definition and the code tested are the ones
in the work tree. pre-commit builds the hook's environment from it with
pip (the project's dependencies come from the package index pip is set up
with) and runs it on ``git commit``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_scan_cases import FO1, PERM

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git"),
    # .ci/run also tests the installed wheel with the sdist's tests, away from
    # the source tree; the hook is installed from that tree, so it runs in the
    # source-tree runs only.
    pytest.mark.skipif(
        not (ROOT / "macaroons_authz").is_dir() or not (ROOT / ".pre-commit-hooks.yaml").is_file(),
        reason="the pre-commit hook installs from the project's source tree, not present here",
    ),
]


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=check,
        env=env,
        timeout=600,
    )


def hook_repository(tmp: Path) -> tuple[Path, str]:
    """A git repository holding the project's files as they are now; and its commit."""
    repo = tmp / "hook-repo"
    shutil.copytree(
        ROOT / "macaroons_authz",
        repo / "macaroons_authz",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "README.md", "LICENSE", ".pre-commit-hooks.yaml"):
        shutil.copyfile(ROOT / name, repo / name)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "hooks")
    return repo, git(repo, "rev-parse", "HEAD").stdout.strip()


def test_pre_commit_refuses_a_commit_that_stages_a_token(tmp_path: Path) -> None:
    hooks, rev = hook_repository(tmp_path)
    work = tmp_path / "project"
    work.mkdir()
    git(work, "init", "-q")
    (work / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n      - id: macaroons-authz-scan\n"
    )
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    installed = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    (work / "README.md").write_text("hello\n")
    git(work, "add", ".")

    def commit(message: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "commit", "-q", "-m", message],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env={**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                 "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"},
        )  # fmt: skip

    clean = commit("clean")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (work / "deploy.sh").write_text(f'export FLY_API_TOKEN="FlyV1 {PERM}"\n')
    (work / "ci.env").write_text(f"FLY_ACCESS_TOKEN={FO1}\n")
    git(work, "add", "deploy.sh", "ci.env")
    refused = commit("leak")
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "Fly.io tokens (macaroons-authz scan --staged)" in output
    assert "Failed" in output
    assert "deploy.sh:1:29  token fm2_ (header)" in output
    assert "ci.env:1:18  opaque fo1_ (bare)" in output
    assert PERM[4:] not in output and FO1[4:] not in output
    assert git(work, "rev-list", "--count", "HEAD").stdout.strip() == "1"
    # Unstaging the token lets the commit through, though the file stays in the work tree.
    git(work, "rm", "-q", "--cached", "deploy.sh", "ci.env")
    (work / "notes.txt").write_text("no secrets\n")
    git(work, "add", "notes.txt")
    assert commit("fine").returncode == 0
    assert git(work, "rev-list", "--count", "HEAD").stdout.strip() == "2"
