"""Scanning a git repository's index and history: :func:`scan_staged`, :func:`scan_history`.

Both read objects through git's plumbing (``git cat-file --batch``), never
by checking anything out, so the work tree is left alone and each blob is
read once however many commits and paths hold it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator
from typing import IO

import attrs

from ..errors import MacaroonError
from .files import DEFAULT_CHUNK_SIZE, ScanStats, _scan_open
from .scanner import Finding

__all__ = ["BlobFinding", "GitError", "scan_history", "scan_staged"]


class GitError(MacaroonError):
    """A git command failed: not a repository, an unknown revision, no ``git``.

    The message is git's own first line of complaint.
    """


@attrs.frozen
class BlobFinding:
    """A finding in a blob of a repository's history.

    Attributes:
        finding: the finding; its ``path`` is the first path the blob was
            seen at.
        blob: the blob's object id.
        commits: ``(commit, path)`` for each commit of the range that added
            or changed a file to this blob, newest first.
    """

    finding: Finding
    blob: str
    commits: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, object]:
        """The finding's dict with ``blob`` and ``commits`` added (no token text)."""
        return {
            **self.finding.to_dict(),
            "blob": self.blob,
            "commits": [{"commit": c, "path": p} for c, p in self.commits],
        }


def _git_exe() -> str:
    exe = shutil.which("git")
    if exe is None:
        raise GitError("git is not installed (not found on PATH)")
    return exe


def _git(repo: str | os.PathLike[str], *args: str, data: bytes | None = None) -> bytes:
    exe = _git_exe()
    try:
        proc = subprocess.run(  # noqa: S603  (git, with fixed arguments)
            [exe, "-C", os.fspath(repo), *args], input=data, capture_output=True, check=False
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(lines[0] if lines else f"git {args[0]} failed")
    return proc.stdout


def _read_blobs(
    repo: str | os.PathLike[str],
    blobs: Iterable[tuple[str, str]],
    chunk_size: int,
    stats: ScanStats | None,
    max_size: int | None,
) -> Iterator[tuple[str, Finding]]:
    """Yield ``(blob, finding)`` for the blobs ``(object id, path)`` given, read once each."""
    todo = list(blobs)
    if not todo:
        return
    exe = _git_exe()
    try:
        proc = subprocess.Popen(  # noqa: S603  (git, with fixed arguments)
            [exe, "-C", os.fspath(repo), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}") from None
    assert proc.stdin is not None and proc.stdout is not None
    stdin, out = proc.stdin, proc.stdout

    def feed() -> None:  # in a thread: git's output pipe would fill while we write
        try:
            stdin.write(b"".join(oid.encode() + b"\n" for oid, _ in todo))
            stdin.close()
        except OSError:  # git went away; the reader sees it
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        for oid, path in todo:
            header = out.readline().split()
            if len(header) != 3 or header[1] != b"blob":
                raise GitError(f"git cat-file: unexpected answer for {oid}")
            size = int(header[2])
            blob = _Blob(out, size)
            if max_size is not None and size > max_size:
                if stats is not None:
                    stats.too_large.append(f"{path}@{oid}")
            else:
                for finding in _scan_open(blob, path, chunk_size, _raise, stats):
                    yield oid, finding
            blob.drain()
            out.read(1)  # the newline after the content
    finally:
        writer.join()
        out.close()
        proc.kill()
        proc.wait()


def _raise(err: OSError) -> None:
    raise err


class _Blob:
    """A blob's *size* bytes of git's output, read as a file."""

    def __init__(self, out: IO[bytes], size: int) -> None:
        self.out = out
        self.left = size

    def read(self, n: int) -> bytes:
        data = self.out.read(min(n, self.left)) if self.left else b""
        self.left -= len(data)
        return data

    def drain(self) -> None:
        while self.left and self.read(1024 * 1024):
            pass


def toplevel(repo: str | os.PathLike[str]) -> str:
    """The top directory of the work tree *repo* is in.

    Raises:
        GitError: *repo* is not in a git work tree.
    """
    return _git(repo, "rev-parse", "--show-toplevel").decode().rstrip("\n")


def scan_staged(
    repo: str | os.PathLike[str] = ".",
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    stats: ScanStats | None = None,
    max_file_size: int | None = None,
) -> Iterator[Finding]:
    """Yield the findings of the files staged for the next commit, as staged.

    Reads the index's version of each file added, copied, modified or
    retyped against ``HEAD`` (every staged file before the first commit),
    not the work tree's: what a pre-commit hook must check. Findings name
    the file's path relative to the repository's top.

    Raises:
        GitError: *repo* is not in a git work tree, or git failed.
    """
    top = toplevel(repo)
    try:
        _git(top, "rev-parse", "--verify", "--quiet", "HEAD")
        base = "HEAD"
    except GitError:  # no commit yet: compare with the empty tree
        base = _git(top, "hash-object", "-t", "tree", "--stdin", data=b"").decode().strip()
    raw = _git(top, "diff-index", "--cached", "-z", "--no-renames", "--diff-filter=ACMT", base)
    fields = raw.split(b"\0")
    blobs = []
    for meta, name in zip(fields[0::2], fields[1::2], strict=False):
        parts = meta.split()
        if len(parts) >= 4 and parts[1] != b"160000":  # not a submodule
            blobs.append((parts[3].decode(), os.fsdecode(name)))
    for _, finding in _read_blobs(top, blobs, chunk_size, stats, max_file_size):
        yield finding


def scan_history(
    repo: str | os.PathLike[str] = ".",
    rev_range: str | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    stats: ScanStats | None = None,
    max_file_size: int | None = None,
) -> Iterator[BlobFinding]:
    """Yield the findings of every blob reachable in *rev_range* (all refs if ``None``).

    The blobs are listed with ``git rev-list --objects`` and read with
    ``git cat-file --batch``, each once. For the blobs that hold findings,
    one ``git log --raw`` over the same range finds the commits and paths
    that introduced them.

    Raises:
        GitError: not a repository, a bad range, or git failed.
    """
    revs = rev_range.split() if rev_range else ["--all"]
    if any(r.startswith("-") and r != "--all" for r in revs):
        raise GitError(f"not a revision range: {rev_range}")
    listed = _git(repo, "rev-list", "--objects", *revs, "--")
    objects: dict[str, str] = {}
    for line in listed.splitlines():
        oid, _, path = line.decode("utf-8", "surrogateescape").partition(" ")
        if path:
            objects.setdefault(oid, path)
    check = _git(
        repo, "cat-file", "--batch-check", data="".join(o + "\n" for o in objects).encode()
    )
    blobs = []
    for line in check.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == b"blob":
            oid = parts[0].decode()
            blobs.append((oid, objects[oid]))
    found = list(_read_blobs(repo, blobs, chunk_size, stats, max_file_size))
    if not found:
        return
    wanted = {oid for oid, _ in found}
    where = _introductions(repo, revs, wanted)
    for oid, finding in found:
        yield BlobFinding(finding, oid, tuple(where.get(oid, ())))


def _introductions(
    repo: str | os.PathLike[str], revs: list[str], wanted: set[str]
) -> dict[str, list[tuple[str, str]]]:
    """``blob -> [(commit, path)]`` for the commits of *revs* that wrote a wanted blob."""
    log = _git(
        repo,
        "log",
        "-m",
        "--raw",
        "-z",
        "--no-abbrev",
        "--no-renames",
        "--format=%x01%H",
        *revs,
        "--",
    )
    where: dict[str, list[tuple[str, str]]] = {}
    for record in log.split(b"\x01")[1:]:
        commit, _, rest = record.partition(b"\0")  # "<commit>\0\n:<raw>\0<path>\0..."
        fields = rest.lstrip(b"\n").split(b"\0")
        for meta, name in zip(fields[0::2], fields[1::2], strict=False):
            parts = meta.split()
            if len(parts) >= 4 and (oid := parts[3].decode()) in wanted:
                entry = (commit.decode().strip(), os.fsdecode(name))
                if entry not in where.setdefault(oid, []):
                    where[oid].append(entry)
    return where
