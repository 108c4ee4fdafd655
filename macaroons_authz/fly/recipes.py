"""flyctl's kinds of restricted tokens, made from a token you hold.

``fly tokens create`` asks Fly.io's API for most kinds: ``org``,
``deploy`` and ``litefs-cloud`` tokens are minted by the server from a
named profile (``deploy_organization``, ``deploy``, ``litefs_cloud``), so
no library can make them from a token. What flyctl then adds *itself*, by
attenuation, is what this module does, caveat for caveat as
``internal/command/tokens/create.go`` does it:

* :func:`readonly_token` — ``tokens create readonly``: the token's
  organization, read-only (with ``--from-existing``, a validity window too);
* :func:`machine_exec_token` — ``tokens create machine-exec``: only the
  given commands on Machines, everything else read-only;
* :func:`ssh_token` — ``tokens create ssh``: two permission tokens, one
  read-only and one for the two GraphQL mutations SSH needs.

Each takes a header (or a comma-separated token list; a ``FlyV1`` or
``Bearer`` scheme is optional) holding one Fly.io permission token and its
discharges, and returns a ``FlyV1`` header: the attenuated permission
token(s) followed by the discharges, as flyctl prints it. OAuth (``fo1_``)
tokens are left out, as flyctl leaves them out.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from ..caveats._base import Caveat
from ..caveats.flyio import Command, Mutations, Organization
from ..caveats.resset import Action, ActionCaveat
from ..errors import AttenuationError
from ..header import parse_permission_and_discharge_tokens, to_header
from ..macaroon import Macaroon
from ..tokens import Instant, Seconds, _window, machine_exec_caveat
from .locations import LOCATION_PERMISSION

__all__ = [
    "DEFAULT_TOKEN_EXPIRY",
    "SSH_MUTATIONS",
    "machine_exec_token",
    "readonly_token",
    "ssh_token",
]

#: flyctl's default ``--expiry`` for the tokens it creates: 20 years of 365 days.
DEFAULT_TOKEN_EXPIRY = datetime.timedelta(hours=24 * 365 * 20)
#: The GraphQL mutations an SSH token's second permission token allows.
SSH_MUTATIONS = ("issueCertificate", "addWireGuardPeer")


def _split(header: str) -> tuple[bytes, list[bytes]]:
    """The one Fly.io permission token of *header* and every other macaroon (its discharges).

    Raises:
        DecodeError: no permission token, several, or a malformed header.
    """
    return parse_permission_and_discharge_tokens(header, LOCATION_PERMISSION)


def _attenuated(permission: bytes, *caveats: Caveat) -> Macaroon:
    token = Macaroon.decode(permission)
    token.add(*caveats)
    return token


def readonly_token(
    header: str,
    *,
    expires_in: Seconds | None = DEFAULT_TOKEN_EXPIRY,
    now: Instant | None = None,
) -> str:
    """A read-only token for the organization of the token in *header* (``tokens create readonly``).

    The permission token must name exactly one organization (one
    ``Organization`` caveat among its own, ``IfPresent`` included); it gains
    ``Organization(that id, read)``, then, if *expires_in* is not ``None``,
    a validity window from *now* (flyctl adds it for ``--from-existing``,
    20 years by default). Pass ``expires_in=None`` for what flyctl adds to
    a read-only token the API just made (the API set its expiry).

    Raises:
        DecodeError: the header holds no Fly.io permission token, or several.
        AttenuationError: the token names no organization or several, or
            the window is bad (see :func:`~macaroons_authz.restrict`).
    """
    permission, discharges = _split(header)
    token = Macaroon.decode(permission)
    # Go's GetCaveats: those inside IfPresent count too.
    orgs = token.unsafe_caveats.of_type(Organization)
    if not orgs:
        raise AttenuationError("no org caveats: the token is not confined to an organization")
    if len(orgs) > 1:
        raise AttenuationError("multiple org caveats: the token names several organizations")
    caveats: list[Caveat] = [Organization(orgs[0].id, Action.READ)]
    window = _window(expires_in, None, now) if expires_in is not None else None
    if window is not None:
        caveats.append(window)
    token.add(*caveats)
    return to_header(token, *discharges)


def machine_exec_token(
    header: str,
    *,
    commands: Iterable[Sequence[str]] = (),
    prefixes: Iterable[Sequence[str]] = (),
) -> str:
    """A token that may run only some commands on Machines (``tokens create machine-exec``).

    Args:
        header: the token to restrict (flyctl starts from a deploy token).
        commands: argvs that must match exactly (flyctl's positional
            command and ``--command``), in order.
        prefixes: argvs that must start the command (``--command-prefix``).

    With neither, any command may run. Either way every other operation
    becomes read-only (:func:`~macaroons_authz.machine_exec_caveat`).

    Raises:
        DecodeError: the header holds no Fly.io permission token, or several.
        TypeError: a command is a bare string instead of an argv.
    """
    permission, discharges = _split(header)
    entries = [Command(_argv(c), exact=True) for c in commands]
    entries += [Command(_argv(c), exact=False) for c in prefixes]
    return to_header(_attenuated(permission, machine_exec_caveat(entries)), *discharges)


def ssh_token(header: str) -> str:
    """A token for SSH to one app (``tokens create ssh``), from that app's deploy token.

    The header holds two copies of the permission token: one restricted to
    reading (an ``Action`` caveat), one to the GraphQL mutations
    :data:`SSH_MUTATIONS` (issuing the SSH certificate, adding the WireGuard
    peer), then the discharges.

    Raises:
        DecodeError: the header holds no Fly.io permission token, or several.
    """
    permission, discharges = _split(header)
    reader = _attenuated(permission, ActionCaveat(Action.READ))
    mutator = _attenuated(permission, Mutations(SSH_MUTATIONS))
    return to_header(reader, mutator, *discharges)


def _argv(command: Sequence[str]) -> tuple[str, ...]:
    if isinstance(command, str):
        raise TypeError(f"a command is an argv (a list of strings), not the string {command!r}")
    return tuple(command)
