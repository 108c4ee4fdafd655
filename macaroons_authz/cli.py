"""``python -m macaroons_authz``: inspect, verify, attenuate, mint, scan, 3p.

Every command reads tokens from its argument or from standard input (``-``
or no argument); given none, it takes the Fly.io token flyctl would use
(:mod:`._cli_fly`). It never prints a token's tail; only ``mint``,
``attenuate`` and ``3p``, whose job is to make a token, print one. Errors are one line
on standard error starting with ``error:`` and exit 2; a denial or an
inauthentic token exits 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from . import __version__, _cli_fly, _cli_verify, crypto
from ._gojson import go_json
from ._inspect import describe, printable, read_members, utc, write_text
from .access import FlyAccess
from .caveats.caveat_set import CaveatSet
from .caveats.resset import Action
from .errors import DecodeError, MacaroonError, UnauthorizedError
from .header import MACAROON_LABELS, decode_token, split_header, to_header
from .leaks import _cli as scan_cli
from .leaks import redact_tokens
from .macaroon import Macaroon
from .stores.keyring import MemoryKeyring
from .tokens import org_token, restrict
from .verifier import FLY_PERMISSION_LOCATION, Verifier

__all__ = ["main"]

#: The demo's signing key: public, for the demo only.
DEMO_KEY = bytes(range(32))
#: The demo's fixed "now", so its output does not depend on the wall clock.
DEMO_NOW = int(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp())
DEMO_ORG, DEMO_APP, DEMO_OTHER_APP, DEMO_MACHINE = 1234, 42, 43, "3d8d9e1b"
KEY_ENV = "MACAROONS_AUTHZ_KEY"
#: The most the CLI reads from a file or standard input: a header is at most
#: 1 MiB, and JSON of caveats or an access far less.
MAX_INPUT = 4 * 1024 * 1024
#: The latest ``--now`` and ``--expires-in`` accepted: Go keeps times in
#: int64 seconds, and a float is exact to 2**53.
MAX_TIME = 2**53


class UsageError(Exception):
    """A command-line mistake: reported on one line, exit status 2."""


def _error_line(message: str) -> str:
    """*message* as one ``error:`` line, with any token in it redacted."""
    return f"error: {printable(redact_tokens(message))}\n"


# -- input ---------------------------------------------------------------------


def _read_input(arg: str | None, stdin: TextIO) -> str:
    if arg is None and _cli_fly.interactive(stdin):
        text = _cli_fly.discovered()  # no token given: the one flyctl would use
    else:
        text = _read_bounded(stdin, "standard input") if arg is None or arg == "-" else arg
        if arg is None and not text.strip():
            text = _cli_fly.discovered()
    text = text.strip()
    if text.lower().startswith("authorization:"):
        text = text.split(":", 1)[1].strip()
    if not text:
        raise UsageError("no token given (pass one as an argument or on standard input)")
    return text


def _read_bounded(f: TextIO, name: str) -> str:
    try:
        text = f.read(MAX_INPUT + 1)
    except UnicodeDecodeError:
        raise UsageError(f"{name} is not UTF-8 text") from None
    if len(text) > MAX_INPUT:
        raise UsageError(f"{name} is longer than {MAX_INPUT} characters")
    return text


def _read_text(path: str) -> str:
    """The UTF-8 text of the file at *path*, at most :data:`MAX_INPUT` characters."""
    try:
        with open(path, encoding="utf-8") as f:
            return _read_bounded(f, path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _read_key(path: str | None) -> bytes:
    """A key from a file (hex text or 32 raw bytes) or from $MACAROONS_AUTHZ_KEY (hex)."""
    if path is None:
        value = os.environ.get(KEY_ENV)
        if not value:
            raise UsageError(f"give --key-file FILE or set {KEY_ENV} (hex)")
        return _hex_key(value.strip(), KEY_ENV)
    try:
        with open(path, "rb") as f:
            raw = f.read(4096)
    except OSError as exc:
        raise UsageError(f"cannot read key file {path}: {exc.strerror}") from None
    stripped = raw.strip()
    if re.fullmatch(rb"[0-9a-fA-F]+", stripped) and len(stripped) % 2 == 0:
        return _hex_key(stripped.decode(), path)
    if len(raw) == crypto.KEY_SIZE:
        return raw
    raise UsageError(f"{path} holds neither a hex key nor {crypto.KEY_SIZE} raw bytes")


def _hex_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{where} is not hex") from None
    if not key:
        raise UsageError(f"{where} is empty")
    return key


# -- inspect ---------------------------------------------------------------------


def _cmd_inspect(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    members = read_members(_read_input(args.token, stdin))
    if not members:
        # Never quote the input: it may be a secret that is not a token.
        raise UsageError("no token in the input (tokens start with fm2_, fm1r_, fm1a_ or fo1_)")
    now = time.time() if args.now is None else args.now
    doc = describe(members, args.location, now)
    if args.json:
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        write_text(doc, members, out)
    return 0


# -- verify ------------------------------------------------------------------------


def _load_access(value: str, now: float | None) -> FlyAccess:
    if value.startswith("@"):
        value = _read_text(value[1:])
    try:
        return FlyAccess.from_json(value, now=now)
    except DecodeError as exc:
        raise UsageError(f"bad --access: {exc}") from None


def _trusted(pairs: Sequence[str]) -> dict[str, list[bytes]]:
    trusted: dict[str, list[bytes]] = {}
    for pair in pairs:
        location, sep, path = pair.rpartition("=")
        if not sep or not location or not path:
            raise UsageError(f"--trusted-3p takes LOCATION=KEYFILE, not {pair!r}")
        trusted.setdefault(location, []).append(_read_key(path))
    return trusted


def _cmd_verify(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    key = _read_key(args.key_file)
    text = _read_input(args.token, stdin)
    access = _load_access(args.access, args.now) if args.access else None
    keyring = _cli_verify.OneKey(key)
    trusted = _trusted(args.trusted_3p)
    verifier = Verifier(keyring, location=args.location, trusted_3ps=trusted)
    try:
        # Several permission tokens are decided as Verifier.authorize does.
        permissions, others = verifier._policy.parse(text)
    except DecodeError as exc:
        raise UsageError(f"cannot read the tokens: {exc}") from None
    return _cli_verify.verify(
        verifier, keyring, trusted, text, permissions, others, access, explain=args.explain, out=out
    )


# -- attenuate and mint ----------------------------------------------------------------


def _cmd_attenuate(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    if (args.file is None) == (args.kind is None):
        raise UsageError("give -f CAVEATS.json or --kind KIND (one of them)")
    if args.kind is not None:
        if args.location != FLY_PERMISSION_LOCATION:
            raise UsageError("--kind makes Fly.io tokens: it takes no --location")
        out.write(_cli_fly.apply_kind(_read_input(args.token, stdin), args, minted=False) + "\n")
        return 0
    caveats = CaveatSet.from_json(_read_text(args.file))
    text = _read_input(args.token, stdin)
    pieces = [p.strip() for p in split_header(text)]
    permissions = changed = 0
    result: list[str | Macaroon] = []
    for piece in pieces:
        label, sep, _ = piece.partition("_")
        if sep and label in MACAROON_LABELS:
            m = Macaroon.decode(decode_token(piece))
            if m.location == args.location and not m.nonce.proof:
                permissions += 1
                before = len(m.unsafe_caveats)
                m.add(*caveats)  # drops caveats the token already has, as Go does
                if len(m.unsafe_caveats) > before:
                    result.append(m)
                    changed += 1
                    continue
        result.append(piece)
    if not permissions:
        raise UsageError(f"no permission token for {args.location} to attenuate")
    if not changed:
        # Not an error: the header already says everything asked; it is printed as given.
        sys.stderr.write("note: nothing new to add: the tokens already hold every caveat given\n")
    out.write(to_header(*result) + "\n")
    return 0


_DURATION = re.compile(r"^([0-9]{1,20})([smhd])$")


def _duration(text: str) -> int:
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 12h or 7d")
    seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if seconds > MAX_TIME:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than {MAX_TIME} seconds")
    return seconds


def _time(text: str) -> float:
    """A ``--now``: Unix seconds, finite, from 0 to :data:`MAX_TIME`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_TIME:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time from 0 to {MAX_TIME} seconds")
    return value


def _uint64(text: str) -> int:
    """An organization or app id: Go's uint64."""
    if not re.fullmatch(r"[0-9]{1,20}", text) or int(text) >= 2**64:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id from 0 to 2**64-1")
    return int(text)


def _actions(text: str) -> int:
    if text != "*" and (not text or set(text) - set("rwcdC")):
        raise argparse.ArgumentTypeError(f"{text!r}: actions are letters of rwcdC, or *")
    return int(Action.from_letters(text))


def _cmd_mint(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    key = _read_key(args.key_file)
    kid = crypto.kid_for_key(key)
    if args.kid is not None:
        try:
            given = bytes.fromhex(args.kid)
        except ValueError:
            raise UsageError("--kid must be hex") from None
        if given != kid:
            # A verifier finds the key by the KID: a token with another would not verify.
            raise UsageError(f"--kid {given.hex()} is not this key's key id {kid.hex()}")
    if args.org is None and (args.app or args.machine or args.role):
        raise UsageError("--app, --machine and --role need --org")
    if args.machine and not args.app:
        raise UsageError("--machine needs --app (Machines belong to apps)")
    if args.org is None:
        raise UsageError("give --org ID: a token for nothing is a token for nothing")
    token = org_token(key, args.org, kid=kid, location=args.location)
    restrict(
        token,
        actions=args.actions,
        apps=args.app or None,
        machines=args.machine or None,
        role=args.role,
        expires_in=args.expires_in,
        now=args.now,
    )
    header = to_header(token)
    if args.kind is not None:
        header = _cli_fly.apply_kind(header, args, minted=True)
    out.write(header + "\n")
    return 0


def _cmd_keys_new(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    key = crypto.new_signing_key()
    try:
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{args.file} exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise UsageError(f"cannot create {args.file}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    out.write(crypto.kid_for_key(key).hex() + "\n")
    return 0


# -- scan --------------------------------------------------------------------------------


def _cmd_scan(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    try:
        return scan_cli.run(args, out, getattr(stdin, "buffer", None), sys.stderr)
    except scan_cli.ScanUsageError as exc:
        raise UsageError(str(exc)) from None


# -- demo ----------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    out.write("macaroons_authz demo (built-in demo key: never use it for real tokens)\n\n")
    keyring = MemoryKeyring([DEMO_KEY])
    token = org_token(keyring.current(), DEMO_ORG)
    out.write(f"1. Minted an organization token for org {DEMO_ORG}, all actions.\n")

    # Attenuation needs no key: whoever holds the header can restrict it.
    held = Macaroon.decode(decode_token(split_header(to_header(token))[0]))
    restrict(
        held,
        apps=[DEMO_APP],
        actions=Action.READ,
        machines=[DEMO_MACHINE],
        expires_in=3600,
        now=DEMO_NOW,
    )
    header = to_header(held)
    out.write(
        f"2. Attenuated it without the key: app {DEMO_APP} only, read-only, "
        f"Machine {DEMO_MACHINE} only,\n   valid for one hour from {utc(DEMO_NOW)}.\n\n"
    )
    out.write("Header (a bearer secret, shown because this is a demo):\n")
    out.write(f"  {header[:72]}...\n\n")
    out.write("Inspection (UNVERIFIED: read from the token, not yet checked):\n")
    out.write(f"  location   {held.location}\n")
    out.write(f"  kid        {(held.nonce.kid or b'').hex()}\n")
    out.write(f"  token id   {held.nonce.uuid}\n")
    for caveat in held.unsafe_caveats:
        out.write(f"  caveat     {caveat.json_type} {go_json(caveat.to_json())}\n")

    verifier = Verifier(keyring)
    out.write("\nDecisions of Verifier.authorize(header, access):\n")
    cases = [
        (f"read app {DEMO_APP} on Machine {DEMO_MACHINE}", DEMO_APP, Action.READ, DEMO_NOW + 60),
        (f"read app {DEMO_OTHER_APP} (another app)", DEMO_OTHER_APP, Action.READ, DEMO_NOW + 60),
        (f"write app {DEMO_APP}", DEMO_APP, Action.WRITE, DEMO_NOW + 60),
        (f"read app {DEMO_APP}, two hours later", DEMO_APP, Action.READ, DEMO_NOW + 7200),
    ]
    for label, app, action, at in cases:
        access = FlyAccess(org_id=DEMO_ORG, app_id=app, machine=DEMO_MACHINE, action=action, at=at)
        try:
            verifier.authorize(header, access)
        except UnauthorizedError as exc:
            out.write(f"  DENIED   {label}\n")
            for cause in exc.leaves():
                out.write(f"           - {cause}\n")
        else:
            out.write(f"  ALLOWED  {label}\n")
    return 0


# -- the parser -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse quotes what it could not use, which may be a token.
        self.print_usage(sys.stderr)
        self.exit(2, _error_line(message))


Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]


def _parser() -> _Parser:
    parser = _Parser(
        prog="python -m macaroons_authz",
        description="Fly.io-compatible macaroon tokens: "
        "inspect, verify, attenuate, mint, scan, 3p.",
    )
    parser.add_argument("--version", action="version", version=f"macaroons-authz {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def command(name: str, help: str, example: str, handler: Handler) -> _Parser:
        sub: _Parser = commands.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    def token_arg(sub: _Parser) -> None:
        sub.add_argument(
            "token",
            nargs="?",
            metavar="TOKEN",
            help="a token, a comma-separated bundle or an Authorization header; "
            "standard input if '-' or absent; if absent and nothing is piped, "
            "the Fly.io token flyctl would use",
        )

    def location_arg(sub: _Parser) -> None:
        sub.add_argument(
            "--location",
            default=FLY_PERMISSION_LOCATION,
            help=f"location of permission tokens (default {FLY_PERMISSION_LOCATION})",
        )

    def now_arg(sub: _Parser) -> None:
        sub.add_argument("--now", type=_time, help=argparse.SUPPRESS)

    sub = command(
        "inspect",
        "show what tokens say, without verifying them",
        'python -m macaroons_authz inspect "$FLY_API_TOKEN"',
        _cmd_inspect,
    )
    token_arg(sub)
    location_arg(sub)
    now_arg(sub)
    sub.add_argument("--json", action="store_true", help="print one JSON document")

    sub = command(
        "verify",
        "verify tokens and, given an access, authorize it",
        "python -m macaroons_authz verify --key-file root.key \\\n"
        '      --access \'{"orgid":1,"appid":2,"action":"r"}\' < header.txt',
        _cmd_verify,
    )
    token_arg(sub)
    sub.add_argument("--key-file", help=f"the root key (hex or raw); else ${KEY_ENV} (hex)")
    location_arg(sub)
    sub.add_argument(
        "--trusted-3p",
        action="append",
        default=[],
        metavar="LOCATION=KEYFILE",
        help="a third party whose discharges may carry identities (repeatable)",
    )
    sub.add_argument("--access", help="the access as flyio.Access JSON, or @FILE")
    sub.add_argument(
        "--explain", action="store_true", help="show each caveat and whether it passed"
    )
    now_arg(sub)

    sub = command(
        "attenuate",
        "add caveats (flyctl JSON) to the permission tokens; no key needed",
        "python -m macaroons_authz attenuate -f caveats.json < header.txt",
        _cmd_attenuate,
    )
    token_arg(sub)
    sub.add_argument("-f", "--file", metavar="CAVEATS.json", help="the caveats to add")
    _cli_fly.add_kind_arguments(sub, expiry=_duration)
    location_arg(sub)
    now_arg(sub)

    sub = command(
        "mint",
        "mint a token and print its header",
        "python -m macaroons_authz mint --key-file root.key \\\n"
        "      --org 1234 --app 42 --actions r --expires-in 1h",
        _cmd_mint,
    )
    sub.add_argument("--key-file", help=f"the root key (hex or raw); else ${KEY_ENV} (hex)")
    sub.add_argument(
        "--kid", help="the key id, hex: optional, checked against the key's own (kid_for_key)"
    )
    sub.add_argument("--location", default=FLY_PERMISSION_LOCATION, help="the token's location")
    sub.add_argument("--org", type=_uint64, help="organization id")
    sub.add_argument("--app", type=_uint64, action="append", default=[], help="app id (repeatable)")
    sub.add_argument("--role", choices=["member", "billing_manager", "admin"], help="role")
    sub.add_argument("--actions", type=_actions, help="allowed actions, letters of rwcdC")
    sub.add_argument("--expires-in", type=_duration, metavar="DURATION", help="e.g. 30m, 12h, 7d")
    sub.add_argument("--machine", action="append", default=[], help="Machine id (repeatable)")
    _cli_fly.add_kind_arguments(sub, expiry=None)
    now_arg(sub)

    keys = command(
        "keys", "manage signing keys", "python -m macaroons_authz keys new root.key", _cmd_keys_new
    )
    keys_commands = keys.add_subparsers(
        dest="keys_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    new = keys_commands.add_parser(
        "new",
        help="write a new signing key (mode 0600) and print its KID",
        epilog="example:\n  python -m macaroons_authz keys new root.key",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    new.add_argument(
        "file", metavar="FILE", help="where to write the key, as hex; an existing file is refused"
    )
    new.set_defaults(handler=_cmd_keys_new)

    sub = command(
        "scan",
        "find leaked tokens in files and directories (never prints them)",
        "python -m macaroons_authz scan . --format sarif > results.sarif",
        _cmd_scan,
    )
    scan_cli.add_arguments(sub)

    _cli_fly.add_3p(commands, _Parser, _read_input)

    command(
        "demo",
        "mint, attenuate and verify a token with a built-in demo key",
        "python -m macaroons_authz demo",
        _cmd_demo,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, sys.stdout, sys.stdin)
    except (UsageError, MacaroonError) as exc:
        sys.stderr.write(_error_line(str(exc)))
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Point stdout at
        # devnull so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
