"""flyctl's token kinds (macaroons_authz.fly.recipes), caveat by caveat against flyctl."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from fly_helpers import APP, KEY, NOW, ORG, TRUSTED, fly_tokens

from macaroons_authz import (
    Action,
    ActionCaveat,
    AttenuationError,
    Caveat,
    Command,
    Commands,
    DecodeError,
    FlyAccess,
    IfPresent,
    Macaroon,
    Mutations,
    Organization,
    UnauthorizedError,
    ValidityWindow,
    decode_token,
    mint,
    org_token,
    to_header,
)
from macaroons_authz.fly import (
    DEFAULT_TOKEN_EXPIRY,
    LOCATION_PERMISSION,
    SSH_MUTATIONS,
    machine_exec_token,
    readonly_token,
    ssh_token,
)
from macaroons_authz.header import split_header

TWENTY_YEARS = 24 * 365 * 20 * 3600

# Transcribed from superfly/flyctl, internal/command/tokens/create.go:
# - runOrgRead: mac.Add(&flyio.Organization{ID: <the token's one Organization
#   caveat's ID>, Mask: resset.ActionRead}); with --from-existing and a non-zero
#   --expiry (default time.Hour*24*365*20) also &macaroon.ValidityWindow{
#   NotBefore: now, NotAfter: now+expiry}.
# - runMachineExec/getCommandCaveat: &resset.IfPresent{Ifs: Commands, Else:
#   resset.ActionRead}; Commands = the positional argv (Exact: true), each
#   --command (Exact: true), each --command-prefix (Exact: false); none at all
#   -> one flyio.Command{Args: []string{}, Exact: false}.
# - runSSH: two copies of the permission token; the first gets
#   ptr(resset.ActionRead) (an Action caveat), the second &flyio.Mutations{
#   Mutations: []string{"issueCertificate", "addWireGuardPeer"}}; the header is
#   both, then the discharges.
# Each row: kind, recipe call, caveats added to each permission token in order.
FLYCTL: list[tuple[str, Callable[[str], str], list[list[Caveat]]]] = [
    (
        "readonly --from-existing",
        lambda h: readonly_token(h, now=NOW),
        [[Organization(ORG, Action.READ), ValidityWindow(NOW, NOW + TWENTY_YEARS)]],
    ),
    (
        "readonly --from-existing --expiry 1h",
        lambda h: readonly_token(h, expires_in=3600, now=NOW),
        [[Organization(ORG, Action.READ), ValidityWindow(NOW, NOW + 3600)]],
    ),
    (
        "readonly (from the API's org token)",
        lambda h: readonly_token(h, expires_in=None),
        [[Organization(ORG, Action.READ)]],
    ),
    (
        "machine-exec",
        machine_exec_token,
        [[IfPresent((Commands([Command((), exact=False)]),), Action.READ)]],
    ),
    (
        "machine-exec ls -la --command uptime --command-prefix 'echo hi'",
        lambda h: machine_exec_token(
            h, commands=[["ls", "-la"], ["uptime"]], prefixes=[["echo", "hi"]]
        ),
        [
            [
                IfPresent(
                    (
                        Commands(
                            [
                                Command(("ls", "-la"), exact=True),
                                Command(("uptime",), exact=True),
                                Command(("echo", "hi"), exact=False),
                            ]
                        ),
                    ),
                    Action.READ,
                )
            ]
        ],
    ),
    (
        "ssh",
        ssh_token,
        [
            [ActionCaveat(Action.READ)],
            [Mutations(("issueCertificate", "addWireGuardPeer"))],
        ],
    ),
]


def _macaroons(header: str) -> list[bytes]:
    return [decode_token(p) for p in split_header(header) if not p.startswith("fo1_")]


@pytest.mark.parametrize(("kind", "recipe", "added"), FLYCTL, ids=[row[0] for row in FLYCTL])
def test_recipe_adds_what_flyctl_adds(
    kind: str, recipe: Callable[[str], str], added: list[list[Caveat]]
) -> None:
    base = fly_tokens()
    out = _macaroons(recipe(base.header))
    perms, discharges = out[: len(added)], out[len(added) :]
    for raw, caveats in zip(perms, added, strict=True):
        # Byte for byte what Go's Add of the same caveats to the same token gives.
        expected = Macaroon.decode(base.permission.encode())
        expected.add(*caveats)
        assert raw == expected.encode()
        token = Macaroon.decode(raw)
        assert token.location == LOCATION_PERMISSION
        assert list(token.unsafe_caveats)[-len(caveats) :] == caveats
    # The discharge follows, unchanged; the OAuth token is left out, as flyctl does.
    assert discharges == [base.discharge.encode()]


def _allows(header: str, **access: object) -> bool:
    raws = _macaroons(header)
    perms = [r for r in raws if Macaroon.decode(r).location == LOCATION_PERMISSION]
    others = [r for r in raws if r not in perms]
    fields: dict[str, object] = {"org_id": ORG, "app_id": APP, "at": NOW + 1}
    fields.update(access)
    for raw in perms:
        caveats = Macaroon.decode(raw).verify(KEY, others, TRUSTED)
        try:
            caveats.validate(FlyAccess(**fields))  # type: ignore[arg-type]
        except UnauthorizedError:
            continue
        return True
    return False


def test_machine_exec_without_commands_allows_any_command_and_only_reads_otherwise() -> None:
    header = machine_exec_token(fly_tokens().header)
    run = {"machine": "m1", "action": Action.CONTROL}
    assert _allows(header, command=["rm", "-rf", "/"], **run)
    assert _allows(header, machine="m1", action=Action.READ)
    assert not _allows(header, machine="m1", action=Action.WRITE)
    assert not _allows(header, action=Action.DELETE)


def test_machine_exec_commands_exact_and_prefix() -> None:
    header = machine_exec_token(fly_tokens().header, commands=[["uptime"]], prefixes=[["ls"]])
    run: dict[str, object] = {"machine": "m1", "action": Action.CONTROL}
    assert _allows(header, command=["uptime"], **run)
    assert not _allows(header, command=["uptime", "-p"], **run)
    assert _allows(header, command=["ls", "-la"], **run)
    assert not _allows(header, command=["rm"], **run)


def test_ssh_token_reads_and_runs_the_two_mutations_only() -> None:
    header = ssh_token(fly_tokens().header)
    assert _allows(header, action=Action.READ)
    assert not _allows(header, action=Action.WRITE)
    for mutation in SSH_MUTATIONS:
        assert _allows(header, mutation=mutation, action=Action.WRITE)
    assert not _allows(header, mutation="deleteApp", action=Action.WRITE)


def test_readonly_token_reads_the_organization_only() -> None:
    header = readonly_token(fly_tokens().header, now=NOW)
    assert _allows(header, action=Action.READ)
    assert not _allows(header, action=Action.WRITE)
    assert not _allows(header, action=Action.READ, at=NOW + TWENTY_YEARS + 1)
    assert DEFAULT_TOKEN_EXPIRY.total_seconds() == TWENTY_YEARS


def test_readonly_needs_exactly_one_organization() -> None:
    none = mint(KEY)
    with pytest.raises(AttenuationError, match="no org caveats"):
        readonly_token(to_header(none), now=NOW)
    two = mint(KEY)
    two.add(Organization(ORG, Action.ALL), Organization(ORG + 1, Action.ALL))
    with pytest.raises(AttenuationError, match="multiple org caveats"):
        readonly_token(to_header(two), now=NOW)
    # Go's GetCaveats finds those inside IfPresent too.
    nested = org_token(KEY, ORG)
    nested.add(IfPresent((Organization(ORG + 1, Action.ALL),), Action.READ))
    with pytest.raises(AttenuationError, match="multiple org caveats"):
        readonly_token(to_header(nested), now=NOW)


@pytest.mark.parametrize("recipe", [readonly_token, machine_exec_token, ssh_token])
def test_recipes_refuse_headers_without_one_permission_token(
    recipe: Callable[[str], str],
) -> None:
    one = fly_tokens()
    with pytest.raises(DecodeError, match="multiple permission tokens"):
        recipe(to_header(one.permission, fly_tokens().permission))
    with pytest.raises(DecodeError, match="no permission token"):
        recipe(to_header(one.discharge))


def test_commands_must_be_argvs() -> None:
    header = fly_tokens().header
    bad: Sequence[str] = "ls"
    with pytest.raises(TypeError, match="argv"):
        machine_exec_token(header, commands=[bad])
    with pytest.raises(TypeError, match="argv"):
        machine_exec_token(header, prefixes=[bad])
