"""Recipes (tokens.py) and the keyring."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from macaroons_authz import (
    Action,
    AllowedRoles,
    AttenuationError,
    CaveatSet,
    Command,
    Commands,
    FlyAccess,
    IfPresent,
    KeyringError,
    Macaroon,
    MemoryKeyring,
    Role,
    SQLiteKeyring,
    UnauthorizedError,
    UnauthorizedForRoleError,
    UnknownKeyError,
    ValidityWindow,
    app_token,
    deploy_token,
    kid_for_key,
    machine_exec_caveat,
    mint,
    org_token,
    read_only_token,
    restrict,
)

KEY = bytes(range(32))
NOW = 1_700_000_000
ORG = 1234


def verified(token: Macaroon) -> CaveatSet:
    return Macaroon.decode(token.encode()).verify(KEY)


def allows(token: Macaroon, **kw: object) -> bool:
    fields: dict[str, object] = {"org_id": ORG, "action": Action.READ, "at": NOW + 1}
    fields.update(kw)
    try:
        verified(token).validate(FlyAccess(**fields))  # type: ignore[arg-type]
    except UnauthorizedError:
        return False
    return True


def test_mint_uses_the_key_fingerprint_as_kid() -> None:
    assert mint(KEY).nonce.kid == kid_for_key(KEY)
    ring = MemoryKeyring([KEY])
    assert mint(ring.current()).nonce.kid == kid_for_key(KEY)
    assert mint(KEY, kid=b"custom").nonce.kid == b"custom"


def test_org_token_roles() -> None:
    admin = org_token(KEY, ORG)
    member = org_token(KEY, ORG, role="member")
    billing = org_token(KEY, ORG, role="billing_manager")
    assert not verified(admin).of_type(AllowedRoles)
    assert verified(member).of_type(AllowedRoles) == [AllowedRoles(Role.MEMBER)]
    assert verified(billing).of_type(AllowedRoles) == [
        AllowedRoles(Role.BILLING_MANAGER | Role.MEMBER)
    ]
    # Members may use member features but not admin-only ones.
    assert allows(member, feature="wg", action=Action.ALL)
    assert allows(member, feature="membership", action=Action.READ)
    assert not allows(member, feature="membership", action=Action.WRITE)
    assert allows(admin, feature="deletion", action=Action.DELETE)
    assert not allows(member, feature="deletion", action=Action.DELETE)
    with pytest.raises(UnauthorizedError) as info:
        verified(member).validate(
            FlyAccess(org_id=ORG, feature="deletion", action=Action.DELETE, at=NOW)
        )
    assert info.value.contains(UnauthorizedForRoleError)
    with pytest.raises(AttenuationError, match="unknown role"):
        org_token(KEY, ORG, role="owner")


def test_org_token_action_mask() -> None:
    token = org_token(KEY, ORG, actions=Action.READ | Action.WRITE)
    assert allows(token, app_id=1, action=Action.WRITE)
    assert not allows(token, app_id=1, action=Action.DELETE)
    assert not allows(token, org_id=ORG + 1)


def test_app_token_one_or_several_apps() -> None:
    one = app_token(KEY, ORG, 42, actions=Action.READ)
    several = app_token(KEY, ORG, [42, 43])
    assert allows(one, app_id=42)
    assert not allows(one, app_id=42, action=Action.WRITE)
    assert not allows(one, app_id=43)
    assert allows(several, app_id=43, action=Action.DELETE)
    assert not allows(several, app_id=44)
    # App tokens do not reach organization-level resources.
    assert not allows(one, feature="wg")


def test_deploy_token() -> None:
    token = deploy_token(KEY, ORG, 42)
    assert allows(token, app_id=42, machine="m1", action=Action.ALL)
    assert allows(token, feature="builder", action=Action.ALL)
    assert not allows(token, app_id=43, action=Action.READ)
    assert allows(token, action=Action.READ)  # org-level reads
    assert not allows(token, action=Action.WRITE)


def test_read_only_token() -> None:
    token = read_only_token(KEY, ORG)
    assert allows(token, app_id=1)
    assert not allows(token, app_id=1, action=Action.WRITE)
    scoped = read_only_token(KEY, ORG, app_ids=[5])
    assert allows(scoped, app_id=5)
    assert not allows(scoped, app_id=6)


def test_expiry_windows() -> None:
    token = org_token(KEY, ORG, expires_in=datetime.timedelta(minutes=5), now=NOW)
    assert verified(token).of_type(ValidityWindow) == [ValidityWindow(NOW, NOW + 300)]
    until = datetime.datetime.fromtimestamp(NOW + 100, datetime.UTC)
    token = org_token(KEY, ORG, not_after=until, now=NOW + 0.9)
    assert verified(token).of_type(ValidityWindow) == [ValidityWindow(NOW, NOW + 100)]
    with pytest.raises(AttenuationError, match="positive"):
        org_token(KEY, ORG, expires_in=0, now=NOW)
    with pytest.raises(AttenuationError, match="in the past"):
        org_token(KEY, ORG, not_after=NOW - 1, now=NOW)
    with pytest.raises(AttenuationError, match="not both"):
        org_token(KEY, ORG, not_after=NOW + 10, expires_in=10, now=NOW)
    with pytest.raises(AttenuationError, match="timezone-aware"):
        org_token(KEY, ORG, not_after=datetime.datetime(2030, 1, 1), now=NOW)


def test_restrict_needs_no_key_and_fails_atomically() -> None:
    token = Macaroon.decode(org_token(KEY, ORG).encode())
    before = token.encode()
    with pytest.raises(AttenuationError):
        restrict(token, apps=[1], not_after=NOW - 5, now=NOW)
    assert token.encode() == before
    restrict(token, apps=[1], machines={"m1": Action.READ}, source_machine="src", now=NOW)
    assert allows(token, app_id=1, machine="m1", source_machine="src")
    assert not allows(token, app_id=1, machine="m1", source_machine="other")
    assert not allows(token, app_id=1, machine="m2", source_machine="src")
    assert not allows(token, app_id=1, machine="m1", source_machine="src", action=Action.WRITE)


def test_restrict_commands_limit_commands_and_make_the_rest_read_only() -> None:
    token = restrict(
        app_token(KEY, ORG, [1]),
        machines=["m1"],
        commands=[["ls"], Command(("uptime",), exact=True)],
    )
    assert allows(token, app_id=1, machine="m1", command=["ls", "-l"])
    assert allows(token, app_id=1, machine="m1", command=["uptime"])
    assert not allows(token, app_id=1, machine="m1", command=["uptime", "-p"])
    assert not allows(token, app_id=1, machine="m1", command=["rm", "-rf"])
    # As flyctl's machine-exec token: every other operation may only read.
    assert allows(token, app_id=1, machine="m1", action=Action.READ)
    assert not allows(token, app_id=1, machine="m1", action=Action.CONTROL)


def test_restrict_no_commands_allows_any_command_as_flyctl_does() -> None:
    # flyctl's machine-exec with no command: Commands{{Args: [], Exact: false}},
    # Else: read (internal/command/tokens/create.go, getCommandCaveat).
    token = restrict(app_token(KEY, ORG, [1]), commands=[])
    assert verified(token)[-1] == machine_exec_caveat()
    assert machine_exec_caveat() == IfPresent((Commands([Command((), exact=False)]),), Action.READ)
    assert allows(token, app_id=1, machine="m1", command=["rm", "-rf"], action=Action.CONTROL)
    assert allows(token, app_id=1, action=Action.READ)
    assert not allows(token, app_id=1, action=Action.WRITE)
    assert not allows(token, app_id=1, machine="m1", action=Action.DELETE)


def test_machine_exec_caveat_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError, match="argv"):
        machine_exec_caveat(["ls -l"][0])  # type: ignore[arg-type]


def test_keyring_rotation_and_errors() -> None:
    ring = MemoryKeyring()
    with pytest.raises(KeyringError, match="no key"):
        ring.current()
    first = ring.add(KEY)
    assert ring.key_for(first) == KEY
    assert ring.key_for(b"nope") is None
    second = ring.generate()
    assert ring.current().kid == second
    ring.retire(second)
    assert ring.current().kid == first
    ring.retire(first)
    with pytest.raises(KeyringError):
        ring.current()
    with pytest.raises(UnknownKeyError):
        ring.retire(b"nope")
    with pytest.raises(KeyringError, match="already used"):
        ring.add(bytes(32), kid=first)
    assert ring.add(KEY) == first  # adding the same key again is harmless
    assert len(ring) == 2
    assert KEY.hex() not in repr(ring) + repr(ring.kids())
    with pytest.raises(TypeError):
        ring.add("not bytes")  # type: ignore[arg-type]


def test_keyrings_refuse_short_root_keys(tmp_path: Path) -> None:
    with SQLiteKeyring(tmp_path / "k.db") as sqlite_ring:
        for ring in (MemoryKeyring(), sqlite_ring):
            with pytest.raises(KeyringError, match="at least 32 bytes"):
                ring.add(b"short")
            with pytest.raises(KeyringError, match="at least 32 bytes"):
                ring.add(b"")
            assert ring.add(bytes(32)) == kid_for_key(bytes(32))


def test_sqlite_keyring_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    with SQLiteKeyring(path) as ring:
        ring.add(KEY)
    path.chmod(0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        SQLiteKeyring(path)
    path.chmod(0o600)
    with SQLiteKeyring(path) as ring:
        assert ring.key_for(kid_for_key(KEY)) == KEY
