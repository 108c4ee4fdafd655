"""Token discovery (macaroons_authz.fly.discover_token) against temporary homes and config files."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from macaroons_authz import MacaroonError
from macaroons_authz.fly import (
    DiscoveredToken,
    FlyConfigError,
    MissingExtraError,
    NoFlyTokenError,
    TokenSource,
    config_path,
    discover_token,
)
from macaroons_authz.fly.discovery import MAX_CONFIG_SIZE

FILE_TOKEN = "FlyV1 fm2_from-the-file"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HOME with flyctl's config.yml, and no Fly variables set."""
    for name in ("FLY_ACCESS_TOKEN", "FLY_API_TOKEN", "FLY_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".fly").mkdir()
    (tmp_path / ".fly" / "config.yml").write_text(
        f"access_token: {FILE_TOKEN}\nsend_metrics: true\nwire_guard_state: {{}}\n"
    )
    return tmp_path


def test_the_order_is_explicit_then_access_token_then_api_token_then_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = discover_token()
    assert (found.text, found.source) == (FILE_TOKEN, TokenSource.CONFIG_FILE)
    assert found.path == home / ".fly" / "config.yml"
    monkeypatch.setenv("FLY_API_TOKEN", "fm2_api")
    assert (discover_token().text, discover_token().source) == (
        "fm2_api",
        TokenSource.FLY_API_TOKEN,
    )
    monkeypatch.setenv("FLY_ACCESS_TOKEN", "fm2_access")
    found = discover_token()
    assert (found.text, found.source) == ("fm2_access", TokenSource.FLY_ACCESS_TOKEN)
    found = discover_token("fm2_explicit")
    assert (found.text, found.source, found.path) == ("fm2_explicit", TokenSource.EXPLICIT, None)


def test_an_empty_access_token_variable_hides_the_api_token_as_in_flyctl(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # flyctl's env.First takes the first variable that is set, even empty.
    monkeypatch.setenv("FLY_ACCESS_TOKEN", "")
    monkeypatch.setenv("FLY_API_TOKEN", "fm2_api")
    assert discover_token().source is TokenSource.CONFIG_FILE
    monkeypatch.delenv("FLY_ACCESS_TOKEN")
    assert discover_token().source is TokenSource.FLY_API_TOKEN


def test_fly_config_dir_replaces_the_home_directory(
    home: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path_factory.mktemp("flyconfig")
    (elsewhere / "config.yml").write_text("access_token: fm2_elsewhere\n")
    monkeypatch.setenv("FLY_CONFIG_DIR", str(elsewhere))
    found = discover_token()
    assert (found.text, found.path) == ("fm2_elsewhere", elsewhere / "config.yml")
    # Set but empty: ignored (Go would read ./config.yml).
    monkeypatch.setenv("FLY_CONFIG_DIR", "")
    assert config_path() == home / ".fly" / "config.yml"


def test_environ_can_be_given(home: Path) -> None:
    env = {"HOME": str(home), "FLY_API_TOKEN": "fm2_given"}
    assert discover_token(environ=env).text == "fm2_given"
    assert discover_token(environ={"HOME": str(home)}).source is TokenSource.CONFIG_FILE


@pytest.mark.parametrize(
    "content",
    ["", "send_metrics: true\n", "access_token: ''\n", "access_token:\n", "access_token: '  '\n"],
)
def test_no_token_anywhere_is_a_typed_error(home: Path, content: str) -> None:
    (home / ".fly" / "config.yml").write_text(content)
    with pytest.raises(NoFlyTokenError, match=r"no Fly\.io token"):
        discover_token()


def test_no_config_file_is_no_token(home: Path) -> None:
    (home / ".fly" / "config.yml").unlink()
    with pytest.raises(NoFlyTokenError) as info:
        discover_token()
    assert isinstance(info.value, LookupError)


def test_an_empty_explicit_token_is_refused(home: Path) -> None:
    with pytest.raises(NoFlyTokenError, match="empty"):
        discover_token(" ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("access_token: [unclosed\n", "not valid YAML at line"),
        ("- a list\n", "not a YAML mapping"),
        ("access_token: 42\n", "access_token is not a string"),
        ("access_token: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
        (b"\xff\xfe access_token", "not valid YAML"),
    ],
)
def test_a_malformed_config_file_is_a_typed_error_naming_the_file(
    home: Path, content: str | bytes, message: str
) -> None:
    path = home / ".fly" / "config.yml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(FlyConfigError, match=message) as info:
        discover_token()
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_an_oversized_config_file_is_refused_before_parsing(home: Path) -> None:
    (home / ".fly" / "config.yml").write_bytes(b"#" * (MAX_CONFIG_SIZE + 1))
    with pytest.raises(FlyConfigError, match="larger than"):
        discover_token()


def test_an_unreadable_config_file_is_a_typed_error(home: Path) -> None:
    path = home / ".fly" / "config.yml"
    path.unlink()
    path.mkdir()  # a directory where the file should be: reading it fails
    with pytest.raises(FlyConfigError, match="cannot read"):
        discover_token()


def test_missing_pyyaml_names_the_extra(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_yaml(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "yaml":
            raise ImportError("No module named 'yaml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_yaml)
    with pytest.raises(MissingExtraError, match=r"macaroons_authz\[fly\]") as info:
        discover_token()
    assert isinstance(info.value, (MacaroonError, ImportError))
    # The environment needs no YAML at all.
    monkeypatch.setenv("FLY_API_TOKEN", "fm2_env")
    assert discover_token().text == "fm2_env"


def test_the_token_never_shows_in_repr_or_description(home: Path) -> None:
    found = discover_token()
    assert FILE_TOKEN not in repr(found) and "fm2_" not in str(found)
    assert found.describe() == f"access_token in {home / '.fly' / 'config.yml'}"
    env = DiscoveredToken("fm2_secret", TokenSource.FLY_API_TOKEN)
    assert env.describe() == "the FLY_API_TOKEN environment variable"
    assert "secret" not in repr(env)
