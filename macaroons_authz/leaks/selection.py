"""Which files a scan reads: directory walks, ``.gitignore``, git's file list, excludes."""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

__all__: list[str] = []

PathArg = str | os.PathLike[str]


def roots_of(paths: PathArg | Iterable[PathArg]) -> list[str]:
    """*paths* as a list of ``str``."""
    roots = []
    for root in [paths] if isinstance(paths, str | os.PathLike) else list(paths):
        root_s = os.fspath(root)
        if not isinstance(root_s, str):
            raise TypeError("paths must be str or os.PathLike[str]")
        roots.append(root_s)
    return roots


@attrs.frozen
class Selection:
    """The rules that leave files out of a walk."""

    ignore: bool = False
    exclude: tuple[str, ...] = ()

    def excluded(self, rel: str, name: str) -> bool:
        """Whether a path below a root (relative, ``/``-separated) is excluded."""
        return any(
            fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(name, g) for g in self.exclude
        )


def git_listed(top: str) -> list[str] | None:
    """The files git lists under directory *top*, relative to it; ``None`` outside a work tree.

    Tracked files (as in the index) and untracked files that no ignore rule
    matches: ``git ls-files --cached --others --exclude-standard``.
    """
    exe = shutil.which("git")
    if exe is None:
        return None
    try:
        proc = subprocess.run(  # noqa: S603  (git, with fixed arguments)
            [exe, "-C", top, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=False,
        )
    except OSError:  # no git
        return None
    if proc.returncode != 0:  # not a work tree
        return None
    names = dict.fromkeys(os.fsdecode(n) for n in proc.stdout.split(b"\0") if n)
    return sorted(names)


def _gitignore_spec(directory: str) -> Any:
    """The rules of *directory*'s ``.gitignore`` (``pathspec``), or ``None``."""
    try:
        import pathspec
    except ImportError:
        return None
    try:
        with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="replace") as f:
            lines = f.read(1024 * 1024).splitlines()
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines)


class Walk:
    """One walk's settings and the files and directories it has visited."""

    def __init__(
        self,
        handle: Callable[[OSError], None],
        roots: list[str],
        follow: bool,
        selection: Selection = Selection(),
    ) -> None:
        self.handle = handle
        self.roots = roots
        self.follow = follow
        self.selection = selection
        self.inside = [os.path.realpath(r) for r in roots] if follow else []
        self.seen: set[tuple[int, int]] = set()

    def files(self) -> Iterator[tuple[str, bool]]:
        """Yield ``(path, walked)``: each file to read, and whether a walk found it."""
        for root in self.roots:
            try:
                st = os.stat(root)  # a root is followed: the caller named it
            except OSError as err:
                self.handle(err)
                continue
            if stat.S_ISDIR(st.st_mode):
                listed = git_listed(root) if self.selection.ignore else None
                found = self.tree(root, st) if listed is None else self.listed(root, listed)
                for path in found:
                    yield path, True
            elif (stat.S_ISREG(st.st_mode) and self.first_visit(st)) or (
                stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)
            ):
                yield root, False

    def first_visit(self, st: os.stat_result) -> bool:
        """Whether this file or directory is new (always, when links are not followed)."""
        if not self.follow:
            return True
        ident = (st.st_dev, st.st_ino)
        if ident in self.seen:
            return False
        self.seen.add(ident)
        return True

    def contains(self, real: str) -> bool:
        for root in self.inside:
            try:
                if os.path.commonpath([real, root]) == root:
                    return True
            except ValueError:  # another drive
                continue
        return False

    def entry(self, path: str, st: os.stat_result) -> tuple[str, bool] | None:
        """``(path, is_dir)`` to visit for *path* (``lstat`` *st*), or ``None`` to skip it."""
        if stat.S_ISLNK(st.st_mode):
            if not self.follow:
                return None
            path = os.path.realpath(path)
            if not self.contains(path):
                return None
            st = os.stat(path)
        if not self.first_visit(st):
            return None
        if stat.S_ISDIR(st.st_mode):
            return path, True
        return (path, False) if stat.S_ISREG(st.st_mode) else None

    def listed(self, top: str, names: list[str]) -> Iterator[str]:
        """The regular files among git's list for *top*."""
        for name in names:
            if self.selection.excluded(name, name.rpartition("/")[2]):
                continue
            path = os.path.join(top, *name.split("/"))
            try:
                found = self.entry(path, os.lstat(path))
            except FileNotFoundError:
                continue  # deleted in the work tree
            except OSError as err:
                self.handle(err)
                continue
            if found is not None and not found[1]:
                yield found[0]

    def tree(self, top: str, st: os.stat_result) -> Iterator[str]:
        """The regular files under *top*, depth first, each directory's files first."""
        self.first_visit(st)
        # (directory, its path relative to top, the .gitignore specs above and in it)
        stack: list[tuple[str, str, tuple[tuple[str, Any], ...]]] = [(top, "", ())]
        while stack:
            directory, rel_dir, specs = stack.pop()
            if self.selection.ignore:
                spec = _gitignore_spec(directory)
                if spec is not None:
                    specs = (*specs, (rel_dir, spec))
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as err:
                self.handle(err)
                continue
            subdirs = []
            for e in entries:
                rel = rel_dir + e.name
                try:
                    found = self.entry(e.path, e.stat(follow_symlinks=False))
                except OSError as err:
                    self.handle(err)
                    continue
                if found is None:
                    continue
                path, is_dir = found
                if self.selection.excluded(rel, e.name) or _ignored(specs, rel, is_dir):
                    continue
                if not is_dir:
                    yield path
                elif ".git" not in (e.name, os.path.basename(path)):
                    subdirs.append((path, rel + "/", specs))
            stack.extend(reversed(subdirs))


def _ignored(specs: tuple[tuple[str, Any], ...], rel: str, is_dir: bool) -> bool:
    """Whether the ``.gitignore`` specs of the directories above *rel* ignore it.

    The deepest file that has a say decides (a later ``!pattern`` re-includes).
    """
    target = rel + "/" if is_dir else rel
    for base, spec in reversed(specs):
        result = spec.check_file(target[len(base) :])
        if result.include is not None:
            return bool(result.include)
    return False
