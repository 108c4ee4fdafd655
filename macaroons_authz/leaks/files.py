"""Scanning files and directory trees: :func:`scan_paths`."""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from .scanner import Finding, _scan

__all__ = ["DEFAULT_CHUNK_SIZE", "scan_paths"]

#: How many bytes :func:`scan_paths` reads from a file at a time.
DEFAULT_CHUNK_SIZE: Final = 1024 * 1024
_BINARY_SNIFF = 8192

_PathArg = str | os.PathLike[str]


def scan_paths(
    paths: _PathArg | Iterable[_PathArg],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_error: Callable[[OSError], None] | None = None,
    follow_symlinks: bool = False,
) -> Iterator[Finding]:
    """Yield the findings of files and of every file under directories.

    Directories are walked in sorted order; directories named ``.git`` are
    not entered. Only regular files are read, and a file whose first 8 KiB
    hold a NUL byte is taken as binary and skipped. Files are read
    *chunk_size* bytes at a time and decoded as UTF-8 (a BOM is dropped,
    undecodable bytes kept as one character each), so memory stays bounded
    whatever a file's size; a token straddling two chunks is found as if
    the file were read whole.

    Symbolic links met inside a directory are skipped, so a scan never
    reads, or reports on, anything outside the trees it was given. A path
    given in *paths* is scanned even if it is itself a link: the caller
    named it.

    Args:
        paths: a path or several.
        chunk_size: bytes read at a time.
        on_error: called with each :class:`OSError` (unreadable file or
            directory); by default the error is raised.
        follow_symlinks: follow links met inside directories, but only to
            targets inside one of *paths* (after resolving every link);
            findings then name the resolved path, and each file and
            directory is visited once, so link loops end.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    handle = on_error or _raise
    for file_path, walked in _walk(paths, handle, follow_symlinks):
        yield from _scan_file(file_path, chunk_size, handle, nofollow=walked)


def _raise(err: OSError) -> None:
    raise err


class _Walk:
    """One walk's settings and the files and directories it has visited."""

    def __init__(self, handle: Callable[[OSError], None], roots: list[str], follow: bool) -> None:
        self.handle = handle
        self.follow = follow
        self.inside = [os.path.realpath(r) for r in roots] if follow else []
        self.seen: set[tuple[int, int]] = set()

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

    def entry(self, e: os.DirEntry[str]) -> tuple[str, bool] | None:
        """``(path, is_dir)`` to visit for *e*, or ``None`` to skip it."""
        if not self.follow:
            if e.is_symlink():
                return None
            if e.is_dir(follow_symlinks=False):
                return e.path, True
            return (e.path, False) if e.is_file(follow_symlinks=False) else None
        path = e.path
        if e.is_symlink():
            path = os.path.realpath(path)
            if not self.contains(path):
                return None
        st = os.stat(path)
        if not self.first_visit(st):
            return None
        if stat.S_ISDIR(st.st_mode):
            return path, True
        return (path, False) if stat.S_ISREG(st.st_mode) else None

    def tree(self, top: str, st: os.stat_result) -> Iterator[str]:
        """The regular files under *top*, depth first, each directory's files first."""
        self.first_visit(st)
        stack = [top]
        while stack:
            try:
                with os.scandir(stack.pop()) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as err:
                self.handle(err)
                continue
            subdirs = []
            for e in entries:
                try:
                    found = self.entry(e)
                except OSError as err:
                    self.handle(err)
                    continue
                if found is None:
                    continue
                path, is_dir = found
                if not is_dir:
                    yield path
                elif ".git" not in (e.name, os.path.basename(path)):
                    subdirs.append(path)
            stack.extend(reversed(subdirs))


def _walk(
    paths: _PathArg | Iterable[_PathArg], handle: Callable[[OSError], None], follow: bool
) -> Iterator[tuple[str, bool]]:
    """Yield ``(path, walked)``: each file to read, and whether a walk found it."""
    roots = []
    for root in [paths] if isinstance(paths, str | os.PathLike) else list(paths):
        root_s = os.fspath(root)
        if not isinstance(root_s, str):
            raise TypeError("paths must be str or os.PathLike[str]")
        roots.append(root_s)
    walk = _Walk(handle, roots, follow)
    for root_s in roots:
        try:
            st = os.stat(root_s)  # a root is followed: the caller named it
        except OSError as err:
            handle(err)
            continue
        if stat.S_ISDIR(st.st_mode):
            for path in walk.tree(root_s, st):
                yield path, True
        elif stat.S_ISREG(st.st_mode) and walk.first_visit(st):
            yield root_s, False


# Open flags for reading a file a walk found: a link swapped in since the
# walk saw a regular file is not followed, and a FIFO does not block.
_WALKED_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_ROOT_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)


def _scan_file(
    path: str, chunk_size: int, handle: Callable[[OSError], None], *, nofollow: bool
) -> Iterator[Finding]:
    try:
        fd = os.open(path, _WALKED_FLAGS if nofollow else _ROOT_FLAGS)
    except OSError as err:
        handle(err)
        return
    f = os.fdopen(fd, "rb")
    try:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return  # replaced since the walk saw it
            first = f.read(chunk_size)
        except OSError as err:
            handle(err)
            return
        if b"\x00" in first[:_BINARY_SNIFF]:
            return
        for hit in _scan(_decoded_chunks(f, first, chunk_size, handle), path):
            yield hit.finding
    finally:
        f.close()


def _decoded_chunks(
    f: Any, first: bytes, chunk_size: int, handle: Callable[[OSError], None]
) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")("surrogateescape")
    data = first
    while data:
        yield decoder.decode(data)
        try:
            data = f.read(chunk_size)
        except OSError as err:
            handle(err)
            return
    yield decoder.decode(b"", final=True)
