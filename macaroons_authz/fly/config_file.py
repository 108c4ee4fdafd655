"""Writing tokens back to flyctl's ``config.yml``, atomically.

flyctl keeps the session in ``access_token`` of ``config.yml`` and rewrites
the whole YAML document when the tokens change (``SetAccessToken``). This
does the same, but never leaves a half-written file: the new document goes
to a temporary file in the same directory, is flushed to disk, and replaces
the old one in one ``os.replace``. The file is private (mode 0600), as
flyctl makes it; the other keys are kept (comments are not: YAML is read
and written as data, as flyctl does).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import DecodeError
from .discovery import FlyConfigError, MissingExtraError, _read_config
from .token_set import TokenSet

__all__ = ["ACCESS_TOKEN_KEY", "ConfigChangedError", "write_access_token"]

#: The key of ``config.yml`` holding the tokens (flyctl's ``AccessTokenFileKey``).
ACCESS_TOKEN_KEY = "access_token"  # noqa: S105 - a key's name
_MODE = 0o600


class ConfigChangedError(FlyConfigError):
    """The file's ``access_token`` is not the one expected: another program changed it.

    Nothing was written, so a newer session is not overwritten by an older one.
    """


def write_access_token(path: Path | str, text: str, *, expect: str | None = None) -> None:
    """Set ``access_token`` in the YAML file at *path* to *text*, atomically.

    The file's other keys are kept. The file (and its directory, if
    missing) is created. A symbolic link is followed: the file it points
    to is replaced.

    Args:
        path: the config file (:func:`~macaroons_authz.fly.config_path`).
        text: the tokens, as :meth:`TokenSet.text
            <macaroons_authz.fly.TokenSet.text>` makes them.
        expect: if given, write only if the file's ``access_token`` is
            still this (what was read before refreshing); a missing file
            or key reads as ``""``; tokens are compared as
            :class:`~macaroons_authz.fly.TokenSet` texts, so a scheme or
            spaces make no difference.

    Raises:
        ConfigChangedError: the file no longer holds *expect*.
        FlyConfigError: the file cannot be read, is not a YAML mapping, or
            cannot be written.
        MissingExtraError: PyYAML is not installed.
        ValueError: *text* spans lines or holds a NUL.
    """
    if any(c in text for c in "\r\n\0"):
        raise ValueError("a token text is one line")
    target = Path(os.path.realpath(path))
    doc: dict[Any, Any] = _read_config(target) or {}
    if expect is not None and not _same(doc.get(ACCESS_TOKEN_KEY), expect):
        raise ConfigChangedError("access_token changed since it was read", target)
    doc[ACCESS_TOKEN_KEY] = text
    _replace(target, _dump(doc, target))


def _same(current: object, expect: str) -> bool:
    """Whether the file's value holds the tokens of *expect* (scheme and spacing aside)."""
    if current is None:
        current = ""
    if not isinstance(current, str):
        return False
    try:
        return TokenSet.parse(current).text() == TokenSet.parse(expect).text()
    except DecodeError:
        return False


def _dump(doc: dict[Any, Any], path: Path) -> bytes:
    try:
        import yaml  # the optional dependency, as in discovery
    except ImportError:  # pragma: no cover - _read_config needed it already
        raise MissingExtraError(
            "writing flyctl's config.yml needs PyYAML: pip install 'macaroons_authz[fly]'"
        ) from None
    try:
        # No line wrapping: a header with a scheme holds a space.
        out = yaml.safe_dump(doc, default_flow_style=False, sort_keys=False, width=2**31 - 1)
    except yaml.YAMLError:
        raise FlyConfigError("cannot write its keys back as YAML", path) from None
    return out.encode("utf-8")


def _replace(path: Path, data: bytes) -> None:
    """Write *data* to a temporary file beside *path*, flush it to disk, move it over *path*."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise FlyConfigError(f"cannot write: {exc.strerror or type(exc).__name__}", path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise FlyConfigError(f"cannot write: {exc.strerror or type(exc).__name__}", path) from None
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    """Flush the rename to disk; best effort (some systems cannot open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
