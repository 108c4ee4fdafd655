"""Finding the Fly.io token a program should use, as flyctl does.

flyctl takes, first to last: the token it is given (``--access-token``),
then ``FLY_ACCESS_TOKEN``, then ``FLY_API_TOKEN``, then ``access_token`` in
``config.yml`` of its config directory (``$FLY_CONFIG_DIR``, else
``~/.fly``). Like flyctl, the first environment variable that is *set*
decides, even when empty: an empty ``FLY_ACCESS_TOKEN`` hides
``FLY_API_TOKEN`` and leaves the config file to decide.

The config file is YAML: reading it needs PyYAML (the ``fly`` extra),
imported only here and only when the file is read.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..errors import MacaroonError

__all__ = [
    "ACCESS_TOKEN_ENV",
    "API_TOKEN_ENV",
    "CONFIG_DIR_ENV",
    "DiscoveredToken",
    "FlyConfigError",
    "MAX_CONFIG_SIZE",
    "MissingExtraError",
    "NoFlyTokenError",
    "TokenSource",
    "config_path",
    "discover_token",
]

# Names of environment variables, not tokens.
ACCESS_TOKEN_ENV = "FLY_ACCESS_TOKEN"  # noqa: S105
API_TOKEN_ENV = "FLY_API_TOKEN"  # noqa: S105
CONFIG_DIR_ENV = "FLY_CONFIG_DIR"
#: The largest config file read; flyctl's holds a few tokens of a few KiB each.
MAX_CONFIG_SIZE = 4 * 1024 * 1024


class NoFlyTokenError(MacaroonError, LookupError):
    """No token was given, none is in the environment, and the config file holds none."""


class FlyConfigError(MacaroonError):
    """The config file exists but cannot be read or is not flyctl's YAML mapping.

    Attributes:
        path: the file.
    """

    def __init__(self, message: str, path: Path) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class MissingExtraError(MacaroonError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class TokenSource(enum.Enum):
    """Where a discovered token came from."""

    EXPLICIT = "explicit"
    FLY_ACCESS_TOKEN = ACCESS_TOKEN_ENV
    FLY_API_TOKEN = API_TOKEN_ENV
    CONFIG_FILE = "config file"


@attrs.frozen
class DiscoveredToken:
    """A token and where it came from; its repr never shows the token.

    Attributes:
        text: the token text as found (a header, a comma-separated list of
            token strings, or one token).
        source: where it came from.
        path: the config file, when it came from one.
    """

    text: str = attrs.field(repr=False)
    source: TokenSource
    path: Path | None = None

    def describe(self) -> str:
        """Where the token came from, in words (for messages; never the token)."""
        if self.source is TokenSource.CONFIG_FILE:
            return f"access_token in {self.path}"
        if self.source is TokenSource.EXPLICIT:
            return "the token given"
        return f"the {self.source.value} environment variable"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where flyctl's ``config.yml`` is: ``$FLY_CONFIG_DIR`` if set and not empty, else ``~/.fly``.

    Go's flyctl takes a *set but empty* ``FLY_CONFIG_DIR`` as the current
    directory; here it is ignored, so an empty variable never makes a
    program read a token from wherever it happens to run.

    Raises:
        NoFlyTokenError: neither ``FLY_CONFIG_DIR`` nor a home directory is known.
    """
    env = os.environ if environ is None else environ
    directory = env.get(CONFIG_DIR_ENV)
    if directory:
        return Path(directory) / "config.yml"
    home = env.get("HOME")
    if not home:
        try:
            home = str(Path.home())
        except RuntimeError:
            raise NoFlyTokenError("no home directory to find ~/.fly/config.yml in") from None
    return Path(home) / ".fly" / "config.yml"


def discover_token(
    token: str | None = None, *, environ: Mapping[str, str] | None = None
) -> DiscoveredToken:
    """The token flyctl would use, and where it came from.

    Args:
        token: a token given explicitly (flyctl's ``--access-token``); it
            wins when it is not ``None``.
        environ: the environment to read; :data:`os.environ` by default.

    Raises:
        NoFlyTokenError: no token anywhere (or an explicit empty one).
        FlyConfigError: the config file cannot be read or is malformed.
        MissingExtraError: the config file must be read and PyYAML is missing.
    """
    env = os.environ if environ is None else environ
    if token is not None:
        if not token.strip():
            raise NoFlyTokenError("the token given is empty")
        return DiscoveredToken(token, TokenSource.EXPLICIT)
    for name, source in (
        (ACCESS_TOKEN_ENV, TokenSource.FLY_ACCESS_TOKEN),
        (API_TOKEN_ENV, TokenSource.FLY_API_TOKEN),
    ):
        value = env.get(name)
        if value is None:
            continue
        # The first variable that is set decides, as flyctl's env.First does.
        if value.strip():
            return DiscoveredToken(value, source)
        break
    path = config_path(env)
    found = _read_access_token(path)
    if found is None:
        raise NoFlyTokenError(
            f"no Fly.io token: none given, {ACCESS_TOKEN_ENV} and {API_TOKEN_ENV} "
            f"unset or empty, and no access_token in {path}"
        )
    return DiscoveredToken(found, TokenSource.CONFIG_FILE, path)


def _read_access_token(path: Path) -> str | None:
    """``access_token`` of the config file; ``None`` if the file or the key is absent or empty."""
    doc = _read_config(path)
    if doc is None:
        return None
    value = doc.get("access_token")
    if value is None:
        return None
    if not isinstance(value, str):
        raise FlyConfigError("access_token is not a string", path)
    return value if value.strip() else None


def _read_config(path: Path) -> dict[Any, Any] | None:
    """The config file's YAML mapping; ``None`` if the file is absent or empty."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_SIZE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FlyConfigError(f"cannot read: {exc.strerror or type(exc).__name__}", path) from None
    if len(data) > MAX_CONFIG_SIZE:
        raise FlyConfigError(f"larger than {MAX_CONFIG_SIZE} bytes", path)
    doc = _load_yaml(data, path)
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise FlyConfigError("not a YAML mapping", path)
    return doc


def _load_yaml(data: bytes, path: Path) -> Any:
    try:
        import yaml  # the optional dependency, needed only here
    except ImportError:
        raise MissingExtraError(
            "reading flyctl's config.yml needs PyYAML: pip install 'macaroons_authz[fly]'"
        ) from None
    try:
        # safe_load builds plain values only; no tags run code.
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        # The problem mark says where, never what the file holds.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise FlyConfigError(f"not valid YAML{where}", path) from None
    except RecursionError:
        raise FlyConfigError("YAML nested too deeply", path) from None
