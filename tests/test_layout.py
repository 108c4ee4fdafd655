"""The package layout: subpackages, the old import paths kept for one release, no eager psycopg.

The tests for the behaviour of the stores are in test_store_contract.py,
test_revocation.py and test_postgres.py.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import types

import pytest

import macaroons_authz
from macaroons_authz import stores

# Old module -> (new module, names the old one exported).
OLD_PATHS = {
    "macaroons_authz.keyring": (
        "macaroons_authz.stores.keyring",
        [
            "MIN_KEY_SIZE",
            "Keyring",
            "KeyringError",
            "MemoryKeyring",
            "SQLiteKeyring",
            "SigningKey",
            "UnknownKeyError",
            "check_root_key",
        ],
    ),
    "macaroons_authz.revocation": (
        "macaroons_authz.stores.revocation",
        [
            "MemoryRevocationStore",
            "Revocation",
            "RevocationStore",
            "SQLiteRevocationStore",
            "token_id",
        ],
    ),
    "macaroons_authz.postgres": (
        "macaroons_authz.stores",
        [
            "KeyEncryptionError",
            "PostgresInvalidator",
            "PostgresKeyring",
            "PostgresRevocationStore",
            "SchemaError",
        ],
    ),
    "macaroons_authz.bundle": (
        "macaroons_authz.thirdparty.bundle",
        [
            "Bundle",
            "BundleToken",
            "FailedMacaroon",
            "Filter",
            "MacaroonToken",
            "MalformedMacaroon",
            "MalformedTokensError",
            "NoAuthorizedTokensError",
            "NoVerifiedTokensError",
            "NonMacaroon",
            "Predicate",
            "UnverifiedMacaroon",
            "VerifiedMacaroon",
            "allows_access",
            "at_location",
            "has_caveat",
            "is_kind",
        ],
    ),
    "macaroons_authz.sso": (
        "macaroons_authz.thirdparty.sso",
        [
            "GOOGLE_ISSUERS",
            "ExpiredTokenError",
            "HostedDomainError",
            "IdentityError",
            "InvalidSignatureError",
            "MalformedIdentityError",
            "MissingHostedDomainError",
            "NotYetValidError",
            "UnknownSigningKeyError",
            "UnsupportedAlgorithmError",
            "WrongAudienceError",
            "WrongHostedDomainError",
            "WrongIssuerError",
            "WrongNonceError",
            "discharge_request",
            "github_identity",
            "issue_discharge",
            "verify_google_id_token",
        ],
    ),
}

POSTGRES_HOMES = {
    "KeyEncryptionError": "macaroons_authz.stores.postgres_keyring",
    "PostgresInvalidator": "macaroons_authz.stores.postgres_invalidator",
    "PostgresKeyring": "macaroons_authz.stores.postgres_keyring",
    "PostgresRevocationStore": "macaroons_authz.stores.postgres_revocation",
    "SchemaError": "macaroons_authz.stores._postgres",
}


def fresh_import(name: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Import *name* afresh, by an import statement compiled as if written in this file.

    The module is executed again (so its import-time warning is raised
    again), and sys.modules is restored afterwards.
    """
    parent, _, child = name.rpartition(".")
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delattr(sys.modules[parent], child, raising=False)
    namespace: dict[str, object] = {}
    exec(compile(f"import {name} as module", __file__, "exec"), namespace)
    module = namespace["module"]
    assert isinstance(module, types.ModuleType)
    monkeypatch.setitem(sys.modules, name, module)
    return module


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_an_old_path_warns_where_it_is_imported_and_names_the_new_one(
    old: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if old == "macaroons_authz.postgres":
        pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    new, _ = OLD_PATHS[old]
    with pytest.warns(DeprecationWarning, match=re.escape(f"{old} is deprecated")) as caught:
        fresh_import(old, monkeypatch)
    assert len(caught) == 1
    warning = caught[0]
    assert new in str(warning.message)
    # stacklevel: the warning points at the import statement, not the shim.
    assert warning.filename == __file__


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_an_old_path_exports_the_very_objects_of_the_new_one(
    old: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if old == "macaroons_authz.postgres":
        pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    new_name, names = OLD_PATHS[old]
    with pytest.warns(DeprecationWarning, match=re.escape(f"{old} is deprecated")):
        module = fresh_import(old, monkeypatch)
    new = importlib.import_module(new_name)
    assert sorted(module.__all__) == sorted(names)
    for name in names:
        assert getattr(module, name) is getattr(new, name), name


def test_the_package_keeps_the_store_names_at_its_top() -> None:
    # The names the package exported from its store modules before they moved.
    for name in (
        "Keyring",
        "KeyringError",
        "MemoryKeyring",
        "MemoryRevocationStore",
        "Revocation",
        "RevocationStore",
        "SQLiteKeyring",
        "SQLiteRevocationStore",
        "SigningKey",
        "StoreError",
        "UnknownKeyError",
        "token_id",
    ):
        assert getattr(macaroons_authz, name) is getattr(stores, name), name
        assert name in macaroons_authz.__all__


def test_postgres_names_come_lazily_from_stores_and_are_their_modules_objects() -> None:
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    for name, home in POSTGRES_HOMES.items():
        assert getattr(stores, name) is getattr(importlib.import_module(home), name), name
        assert name in dir(stores)
        assert name not in stores.__all__  # a star import must not need psycopg
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = stores.Nothing


def test_modules_import_without_psycopg_or_a_deprecated_path() -> None:
    # A fresh interpreter, where a DeprecationWarning is an error: the package,
    # then every module in it (except the deprecated ones and __main__).
    code = """
import json, pkgutil, sys, warnings
warnings.simplefilter("error")
import macaroons_authz
from macaroons_authz.stores import *
first = sorted(m for m in sys.modules if m.split(".")[0] in ("psycopg", "psycopg_pool"))
old = {"macaroons_authz.keyring", "macaroons_authz.revocation", "macaroons_authz.postgres",
       "macaroons_authz.sso", "macaroons_authz.bundle"}
loaded = set(sys.modules)
missing = {}
for info in pkgutil.walk_packages(macaroons_authz.__path__, "macaroons_authz."):
    if info.name in old or info.name.endswith(".__main__"):
        continue
    try:
        __import__(info.name)
    except ModuleNotFoundError as exc:  # an optional dependency that is not installed
        if (exc.name or "").startswith("macaroons_authz"):
            raise
        missing[info.name] = exc.name
print(json.dumps({
    "psycopg_on_import": first,
    "deprecated_loaded": sorted(old & set(sys.modules)),
    "imported": sorted(m for m in sys.modules if m.startswith("macaroons_authz.")),
    "missing": missing,
}))
"""
    run = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["psycopg_on_import"] == []
    assert result["deprecated_loaded"] == []
    assert "macaroons_authz.stores.postgres_invalidator" in result["imported"] or (
        "macaroons_authz.stores.postgres_invalidator" in result["missing"]
    )


# The names macaroons_authz.thirdparty had as one module, by the module that now holds them.
THIRDPARTY_HOMES = {
    "macaroons_authz.thirdparty.protocol": [
        "INIT_PATH",
        "POLL_PATH",
        "USER_PATH",
        "Approve",
        "Decision",
        "Defer",
        "DischargeError",
        "DischargeTimeoutError",
        "FlowNotFoundError",
        "Refuse",
        "TicketRequest",
        "UserInteractionRequiredError",
    ],
    "macaroons_authz.thirdparty.flows": ["PendingFlow"],
    "macaroons_authz.thirdparty.service": ["FLOW_ENVIRON_KEY", "DischargeService"],
    "macaroons_authz.thirdparty.client": ["DischargeClient"],
}


def test_thirdparty_keeps_its_names_and_they_are_their_new_modules_objects() -> None:
    from macaroons_authz import thirdparty

    moved = [name for names in THIRDPARTY_HOMES.values() for name in names]
    # Every name it had is kept; new capabilities may add names.
    assert set(moved) <= set(thirdparty.__all__)
    for home, names in THIRDPARTY_HOMES.items():
        module = importlib.import_module(home)
        for name in names:
            obj = getattr(module, name)
            assert getattr(thirdparty, name) is obj, name
            if isinstance(obj, type):
                assert obj.__module__ == home, name  # defined there, not re-exported
            if name in macaroons_authz.__all__:
                assert getattr(macaroons_authz, name) is obj, name


def test_the_package_keeps_the_sso_names_at_its_top() -> None:
    from macaroons_authz.thirdparty import sso

    for name in sso.__all__:
        assert getattr(macaroons_authz, name) is getattr(sso, name), name
        assert name in macaroons_authz.__all__


def test_the_old_sso_path_keeps_its_public_names_outside_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from macaroons_authz.thirdparty import sso

    with pytest.warns(DeprecationWarning, match="macaroons_authz.sso is deprecated"):
        module = fresh_import("macaroons_authz.sso", monkeypatch)
    assert module.MAX_ID_TOKEN_LENGTH == sso.MAX_ID_TOKEN_LENGTH == 16 * 1024
    assert module.Identity is sso.Identity
