"""``python -m macaroons_authz``: the command line."""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from typing import TextIO

from . import __version__
from .access import FlyAccess
from .caveats._base import go_json
from .caveats.resset import Action
from .errors import MacaroonError, UnauthorizedError
from .header import parse_header, to_header
from .keyring import MemoryKeyring
from .macaroon import Macaroon
from .tokens import org_token, restrict
from .verifier import Verifier

__all__ = ["main"]

#: The demo's signing key: public, for the demo only.
DEMO_KEY = bytes(range(32))
#: The demo's fixed "now", so its output does not depend on the wall clock.
DEMO_NOW = int(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp())
DEMO_ORG, DEMO_APP, DEMO_OTHER_APP, DEMO_MACHINE = 1234, 42, 43, "3d8d9e1b"


def _utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _demo(out: TextIO) -> int:
    out.write("macaroons_authz demo (built-in demo key: never use it for real tokens)\n\n")
    keyring = MemoryKeyring([DEMO_KEY])
    token = org_token(keyring.current(), DEMO_ORG)
    out.write(f"1. Minted an organization token for org {DEMO_ORG}, all actions.\n")

    # Attenuation needs no key: whoever holds the header can restrict it.
    held = Macaroon.decode(parse_header(to_header(token))[0])
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
        f"Machine {DEMO_MACHINE} only,\n   valid for one hour from {_utc(DEMO_NOW)}.\n\n"
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m macaroons_authz",
        description="Fly.io-compatible macaroon tokens: mint, inspect, verify.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="mint, attenuate and verify a token with a built-in demo key",
        description="Mint a token on a built-in demo key, attenuate it, inspect it and "
        "show allowed and denied decisions.",
        epilog="example: python -m macaroons_authz demo",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(sys.stdout)
    except MacaroonError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    return 2
