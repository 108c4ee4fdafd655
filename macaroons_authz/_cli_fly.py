"""The command line's Fly.io parts: where a token comes from, flyctl's kinds, the ``3p`` commands.

* A command given no token (no argument, and nothing on a piped standard
  input) takes the one flyctl would use (:func:`~macaroons_authz.fly.discover_token`)
  and says on standard error where it came from, never the token.
* ``mint`` and ``attenuate`` take ``--kind`` for flyctl's kinds of token
  that attenuation makes (:mod:`macaroons_authz.fly.recipes`).
* ``3p add``, ``3p ticket``, ``3p discharge`` and ``3p add-discharge`` are
  flyctl's ``fly tokens 3p`` commands (``internal/command/tokens/3p.go``):
  the shared secret is base64 of 32 bytes, from ``--secret-file`` or
  ``TOKEN_3P_SHARED_SECRET`` (flyctl's ``--secret``, which leaves the secret
  in the shell's history and the process list, is left out).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any, TextIO

from . import crypto
from .errors import MacaroonError
from .fly.discovery import NoFlyTokenError, TokenSource, discover_token
from .fly.recipes import DEFAULT_TOKEN_EXPIRY, machine_exec_token, readonly_token, ssh_token
from .header import MACAROON_LABELS, decode_token, parse_permission_and_discharge_tokens, to_header
from .macaroon import Macaroon, discharge_ticket
from .verifier import FLY_PERMISSION_LOCATION

__all__ = ["KINDS", "SECRET_ENV", "FlyCLIError"]

#: flyctl's variable for the third-party shared secret (base64).
SECRET_ENV = "TOKEN_3P_SHARED_SECRET"  # noqa: S105 - a variable's name
#: The kinds of ``fly tokens create`` made by attenuating a token.
KINDS = ("readonly", "machine-exec", "ssh")
_MAX_SECRET_FILE = 4096

ReadInput = Callable[[str | None, TextIO], str]
Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]


class FlyCLIError(MacaroonError):
    """A mistake on the command line's Fly.io parts: one ``error:`` line, exit 2."""


# -- where the token comes from ----------------------------------------------------


def interactive(stdin: TextIO) -> bool:
    """Whether standard input is a terminal (then a missing token is looked for, not read)."""
    try:
        return stdin.isatty()
    except (AttributeError, ValueError):
        return False


def discovered(stderr: TextIO | None = None) -> str:
    """The token flyctl would use; say on *stderr* where it came from.

    Raises:
        FlyCLIError: there is none.
        FlyConfigError, MissingExtraError: the config file cannot be read.
    """
    try:
        found = discover_token()
    except NoFlyTokenError as exc:
        raise FlyCLIError(f"no token given (as an argument or on standard input); {exc}") from None
    where = found.source.value if found.source is not TokenSource.CONFIG_FILE else found.describe()
    (sys.stderr if stderr is None else stderr).write(f"note: token from {where}\n")
    return found.text


# -- flyctl's kinds --------------------------------------------------------------------


def add_kind_arguments(
    sub: argparse.ArgumentParser, *, expiry: Callable[[str], int] | None
) -> None:
    """``--kind`` and its options; ``--expiry`` (readonly's window) if *expiry* parses it."""
    sub.add_argument(
        "--kind",
        choices=KINDS,
        help="make one of flyctl's kinds of token from it (fly tokens create KIND)",
    )
    sub.add_argument(
        "--command",
        action="append",
        default=[],
        metavar="CMD",
        help="machine-exec: a command that may run, exactly (shell words; repeatable)",
    )
    sub.add_argument(
        "--command-prefix",
        action="append",
        default=[],
        metavar="CMD",
        help="machine-exec: what an allowed command starts with (repeatable)",
    )
    if expiry is not None:
        sub.add_argument(
            "--expiry",
            type=expiry,
            metavar="DURATION",
            help="readonly: valid for this long from now (flyctl's default: 20 years)",
        )


def apply_kind(header: str, args: argparse.Namespace, *, minted: bool) -> str:
    """*header* made into ``args.kind``, as ``fly tokens create`` makes it.

    A freshly minted token gets readonly's organization caveat only (its
    expiry was set by ``--expires-in``); an existing one also gets
    ``--expiry`` (flyctl's ``--from-existing``).

    Raises:
        FlyCLIError: options that do not go with the kind.
    """
    kind = args.kind
    if (args.command or args.command_prefix) and kind != "machine-exec":
        raise FlyCLIError("--command and --command-prefix go with --kind machine-exec")
    if getattr(args, "expiry", None) is not None and kind != "readonly":
        raise FlyCLIError("--expiry goes with --kind readonly")
    if kind == "readonly":
        if minted:
            return readonly_token(header, expires_in=None)
        expires = DEFAULT_TOKEN_EXPIRY if args.expiry is None else args.expiry
        return readonly_token(header, expires_in=expires, now=args.now)
    if kind == "machine-exec":
        return machine_exec_token(
            header,
            commands=[_words(c, "--command") for c in args.command],
            prefixes=[_words(c, "--command-prefix") for c in args.command_prefix],
        )
    return ssh_token(header)


def _words(command: str, flag: str) -> list[str]:
    # flyctl splits with shlex (github.com/google/shlex), as a POSIX shell would.
    try:
        return shlex.split(command)
    except ValueError as exc:
        raise FlyCLIError(f"cannot split the {flag} {command!r} into words: {exc}") from None


# -- 3p ----------------------------------------------------------------------------------------


def add_3p(
    commands: argparse._SubParsersAction[Any],
    parser_class: type[argparse.ArgumentParser],
    read_input: ReadInput,
) -> None:
    """The ``3p`` command (alias ``third-party``) and its four actions."""
    prog = "python -m macaroons_authz 3p"
    group = commands.add_parser(
        "3p",
        aliases=["third-party"],
        help="add and discharge third-party caveats, as flyctl's 'tokens 3p'",
        description=(
            "Add, manage and discharge third-party caveats of a token.\n"
            "The token is an argument, standard input, or the one flyctl would use;\n"
            "the shared secret (base64 of 32 bytes) comes from --secret-file or\n"
            f"${SECRET_ENV}."
        ),
        epilog=f"example:\n  {prog} ticket -l https://3p.example < header.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = group.add_subparsers(
        dest="tp_command", required=True, metavar="ACTION", parser_class=parser_class
    )

    def action(name: str, help: str, example: str, run: Callable[..., int]) -> Any:
        sub = actions.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            epilog=f"example:\n  {prog} {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=functools.partial(run, read_input))
        return sub

    def token(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "token",
            nargs="?",
            metavar="TOKEN",
            help="the token or header; standard input if '-'; if absent, standard "
            "input when piped, else the token flyctl would use",
        )

    def location(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "-l", "--location", required=True, help="URL identifying the third-party service"
        )

    def secret(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "-s",
            "--secret-file",
            metavar="FILE",
            help=f"file holding the base64 shared secret; else ${SECRET_ENV}",
        )

    sub = action(
        "add",
        "add a third-party caveat that the service at --location must discharge",
        "add -l https://3p.example -s s.b64 < header.txt",
        _run_add,
    )
    token(sub)
    location(sub)
    secret(sub)
    sub = action(
        "ticket",
        "print the ticket of the token's third-party caveat for --location (base64)",
        "ticket -l https://3p.example < header.txt",
        _run_ticket,
    )
    token(sub)
    location(sub)
    sub = action(
        "discharge",
        "discharge a ticket with the shared secret; print the discharge (base64)",
        "discharge -l https://3p.example --ticket B64",
        _run_discharge,
    )
    location(sub)
    secret(sub)
    sub.add_argument("--ticket", required=True, help="the ticket, base64 (3p ticket prints it)")
    sub = action(
        "add-discharge",
        "add a discharge (base64, or an fm2_ token) to the token's header",
        "add-discharge -d BASE64 < header.txt",
        _run_add_discharge,
    )
    token(sub)
    sub.add_argument("-d", "--discharge", required=True, help="the discharge token")


def _secret(path: str | None) -> bytes:
    """The shared secret: base64 of 32 bytes, from *path* or ``$TOKEN_3P_SHARED_SECRET``."""
    if path is not None:
        where = path
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_SECRET_FILE + 1)
        except OSError as exc:
            raise FlyCLIError(
                f"cannot read the shared secret from {path}: {exc.strerror}"
            ) from None
        if len(raw) > _MAX_SECRET_FILE:
            raise FlyCLIError(f"{path} is too large to hold a shared secret")
    else:
        where = SECRET_ENV
        value = os.environ.get(SECRET_ENV, "")
        if not value.strip():
            raise FlyCLIError(f"give the shared secret with --secret-file FILE or ${SECRET_ENV}")
        raw = value.encode("utf-8", "replace")
    try:
        secret = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise FlyCLIError(f"the shared secret in {where} is not base64") from None
    if len(secret) != crypto.KEY_SIZE:
        raise FlyCLIError(f"the shared secret should be {crypto.KEY_SIZE} bytes long (decoded)")
    return secret


def _permission(text: str) -> tuple[Macaroon, list[bytes]]:
    """The header's one Fly.io permission token and its other macaroons."""
    permission, others = parse_permission_and_discharge_tokens(text, FLY_PERMISSION_LOCATION)
    return Macaroon.decode(permission), others


def _run_add(read_input: ReadInput, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    key = _secret(args.secret_file)
    token, others = _permission(read_input(args.token, stdin))
    token.add_3p(key, args.location)
    out.write(to_header(token, *others) + "\n")
    return 0


def _run_ticket(read_input: ReadInput, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    token, _ = _permission(read_input(args.token, stdin))
    tickets = token.third_party_tickets().get(args.location, [])
    if not tickets:
        raise FlyCLIError(f"the token has no third-party caveat for {args.location}")
    if len(tickets) > 1:
        raise FlyCLIError(f"the token has {len(tickets)} third-party caveats for {args.location}")
    out.write(base64.b64encode(tickets[0]).decode("ascii") + "\n")
    return 0


def _run_discharge(
    read_input: ReadInput, args: argparse.Namespace, out: TextIO, stdin: TextIO
) -> int:
    key = _secret(args.secret_file)
    try:
        ticket = base64.b64decode(args.ticket.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise FlyCLIError("--ticket is not base64") from None
    _, discharge = discharge_ticket(key, args.location, ticket)
    out.write(base64.b64encode(discharge.encode()).decode("ascii") + "\n")
    return 0


def _run_add_discharge(
    read_input: ReadInput, args: argparse.Namespace, out: TextIO, stdin: TextIO
) -> int:
    discharge = _discharge_bytes(args.discharge)
    token, others = _permission(read_input(args.token, stdin))
    kid = Macaroon.decode(discharge).nonce.kid
    if not any(kid in tickets for tickets in token.third_party_tickets().values()):
        raise FlyCLIError("the discharge is for none of the token's third-party caveats")
    out.write(to_header(token, *others, discharge) + "\n")
    return 0


def _discharge_bytes(text: str) -> bytes:
    text = text.strip()
    label, sep, _ = text.partition("_")
    if sep and label in MACAROON_LABELS:
        return decode_token(text)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FlyCLIError("--discharge is neither base64 nor a token") from None
