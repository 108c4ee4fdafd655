"""Scanning files, directory trees and streams: :func:`scan_paths`, :func:`scan_stream`."""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Final, Protocol

from .scanner import Finding, _scan
from .selection import PathArg, Selection, Walk, roots_of

__all__ = ["DEFAULT_CHUNK_SIZE", "ScanStats", "scan_paths", "scan_stream"]

#: How many bytes :func:`scan_paths` reads from a file at a time. Buffers this
#: size are reused by the allocator; 1 MiB ones were mapped afresh for each
#: chunk (about 5,000 page faults per 32 MB), and scanned files 12% slower.
DEFAULT_CHUNK_SIZE: Final = 128 * 1024
_SNIFF = 8192


class _Reader(Protocol):
    def read(self, n: int, /) -> bytes: ...


class ScanStats:
    """What a scan read and what it skipped; pass one to :func:`scan_paths` to fill it.

    Attributes:
        files: how many files (and streams) were read.
        bytes: how many bytes were read from them.
        binary: the files skipped as binary (a NUL byte in their first
            8 KiB that is not the pattern of UTF-16 text).
        too_large: the files skipped for being over ``max_file_size``.
    """

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.binary: list[str] = []
        self.too_large: list[str] = []

    def __repr__(self) -> str:
        return (
            f"ScanStats(files={self.files}, bytes={self.bytes}, "
            f"binary={len(self.binary)}, too_large={len(self.too_large)})"
        )


def scan_paths(
    paths: PathArg | Iterable[PathArg],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_error: Callable[[OSError], None] | None = None,
    follow_symlinks: bool = False,
    ignore: bool = False,
    exclude: Iterable[str] = (),
    max_file_size: int | None = None,
    stats: ScanStats | None = None,
) -> Iterator[Finding]:
    """Yield the findings of files and of every file under directories.

    Directories are walked in sorted order; directories named ``.git`` are
    not entered. Regular files are read, and so are FIFOs and character
    devices named in *paths* (``/dev/stdin``, a pipe). A file is decoded as
    UTF-16 if it starts with a UTF-16 byte-order mark, or has none but its
    first 8 KiB have the zero bytes of mostly-ASCII UTF-16; else as UTF-8 (a
    BOM is dropped, undecodable bytes kept as one character each). Any
    other file with a NUL byte in its first 8 KiB is binary, and skipped.
    Files are read *chunk_size* bytes at a time, so memory stays bounded
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
        ignore: inside a git work tree, read only the files git lists
            (tracked, or untracked and not ignored: ``git ls-files``);
            outside one, skip what ``.gitignore`` files ignore (with the
            optional ``pathspec`` package; without it nothing is skipped).
            Files named in *paths* are read all the same.
        exclude: glob patterns (:mod:`fnmatch`, ``*`` matches ``/`` too)
            matched against each path below a root, relative to it, and
            against its file name; a match is skipped (a directory with
            all it holds).
        max_file_size: skip regular files larger than this many bytes.
        stats: filled with what was read and skipped.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    if max_file_size is not None and max_file_size < 0:
        raise ValueError("max_file_size must not be negative")
    handle = on_error or _raise
    selection = Selection(ignore=ignore, exclude=tuple(exclude))
    walk = Walk(handle, roots_of(paths), follow_symlinks, selection)
    for file_path, walked in walk.files():
        yield from _scan_file(file_path, chunk_size, handle, walked, max_file_size, stats)


def scan_stream(
    f: IO[bytes],
    path: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    stats: ScanStats | None = None,
) -> Iterator[Finding]:
    """Yield the findings of a binary stream (standard input, a pipe), read to its end.

    It is decoded as :func:`scan_paths` decodes a file, and skipped as a
    file would be if binary; *path* names it in the findings.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    yield from _scan_open(f, path, chunk_size, _raise, stats)


def _raise(err: OSError) -> None:
    raise err


# Open flags for reading a file a walk found: a link swapped in since the
# walk saw a regular file is not followed, and a FIFO does not block.
_WALKED_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_ROOT_FLAGS: Final = os.O_RDONLY


def _scan_file(
    path: str,
    chunk_size: int,
    handle: Callable[[OSError], None],
    walked: bool,
    max_size: int | None,
    stats: ScanStats | None,
) -> Iterator[Finding]:
    try:
        fd = os.open(path, _WALKED_FLAGS if walked else _ROOT_FLAGS)
    except OSError as err:
        handle(err)
        return
    with os.fdopen(fd, "rb") as f:
        try:
            mode = os.fstat(fd).st_mode
        except OSError as err:
            handle(err)
            return
        if walked and not stat.S_ISREG(mode):
            return  # replaced since the walk saw it
        if max_size is not None and stat.S_ISREG(mode) and os.fstat(fd).st_size > max_size:
            if stats is not None:
                stats.too_large.append(path)
            return
        yield from _scan_open(f, path, chunk_size, handle, stats)


def _encoding(first: bytes) -> str | None:
    """The codec to read a file starting with *first* with, or ``None`` if binary."""
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # the decoder reads and drops the BOM
    sniff = first[:_SNIFF]
    if b"\x00" not in sniff:
        return "utf-8-sig"
    # Mostly-ASCII UTF-16 without a BOM: every other byte is zero.
    pairs = len(sniff) // 2
    even, odd = sniff[0::2].count(0), sniff[1::2].count(0)
    if pairs and sniff.count(b"\x00\x00") * 4 < pairs:
        if odd * 2 >= pairs and even * 16 < pairs:
            return "utf-16-le"
        if even * 2 >= pairs and odd * 16 < pairs:
            return "utf-16-be"
    return None


def _scan_open(
    f: _Reader,
    path: str,
    chunk_size: int,
    handle: Callable[[OSError], None],
    stats: ScanStats | None,
) -> Iterator[Finding]:
    try:
        first = f.read(chunk_size)
        # A short first read from a pipe: sniff at least 8 KiB when there is more.
        while 0 < len(first) < _SNIFF and (more := f.read(chunk_size)):
            first += more
    except OSError as err:
        handle(err)
        return
    encoding = _encoding(first)
    if encoding is None:
        if stats is not None:
            stats.binary.append(path)
        return
    if stats is not None:
        stats.files += 1
    for hit in _scan(_decoded_chunks(f, first, chunk_size, handle, encoding, stats), path):
        yield hit.finding


def _decoded_chunks(
    f: _Reader,
    first: bytes,
    chunk_size: int,
    handle: Callable[[OSError], None],
    encoding: str,
    stats: ScanStats | None,
) -> Iterator[str]:
    # UTF-8 keeps undecodable bytes as one character each; UTF-16 has no
    # such bytes but lone surrogates, which "surrogatepass" keeps.
    errors = "surrogateescape" if encoding == "utf-8-sig" else "surrogatepass"
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    data = first
    while data:
        if stats is not None:
            stats.bytes += len(data)
        yield decoder.decode(data)
        try:
            data = f.read(chunk_size)
        except OSError as err:
            handle(err)
            return
    try:
        yield decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        yield "\ufffd"  # an odd last byte of UTF-16
