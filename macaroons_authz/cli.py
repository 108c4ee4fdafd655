"""``python -m macaroons_authz``: the command line."""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from typing import TextIO

from . import __version__
from .access import FlyAccess
from .caveats import Action, Apps, Machines, Organization, ValidityWindow
from .crypto import kid_for_key
from .errors import MacaroonError, UnauthorizedError
from .header import parse_header, to_header
from .macaroon import Macaroon

__all__ = ["main"]

#: The demo's signing key: public, for the demo only.
DEMO_KEY = bytes(range(32))
DEMO_LOCATION = "https://api.fly.io/v1"
#: The demo's fixed "now", so its output does not depend on the wall clock.
DEMO_NOW = int(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp())
DEMO_ORG, DEMO_APP, DEMO_OTHER_APP, DEMO_MACHINE = 1234, 42, 43, "3d8d9e1b"


def _utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _demo(out: TextIO) -> int:
    out.write("macaroons_authz demo (built-in demo key; never use it for real tokens)\n\n")
    token = Macaroon.new(kid_for_key(DEMO_KEY), DEMO_LOCATION, DEMO_KEY)
    token.add(Organization(DEMO_ORG, Action.ALL))
    out.write(f"1. Minted an organization token for org {DEMO_ORG} (all actions).\n")

    # Attenuation needs no key: decode the header and add caveats.
    held = Macaroon.decode(parse_header(to_header(token))[0])
    held.add(
        Apps({DEMO_APP: Action.READ}),
        Machines({DEMO_MACHINE: Action.READ}),
        ValidityWindow(DEMO_NOW, DEMO_NOW + 3600),
    )
    header = to_header(held)
    out.write(
        f"2. Attenuated it, without the key, to app {DEMO_APP}, read-only, "
        f"Machine {DEMO_MACHINE}, valid for one hour.\n\n"
    )
    out.write(f"Header (a bearer secret; shown because this is a demo):\n  {header[:60]}...\n\n")
    out.write("Inspection (UNVERIFIED):\n")
    out.write(f"  location  {held.location}\n  token id  {held.nonce.uuid}\n")
    for caveat in held.unsafe_caveats:
        out.write(f"  caveat    {caveat.json_type} {caveat.to_json()}\n")

    verified = Macaroon.decode(parse_header(header)[0]).verify(DEMO_KEY)
    out.write("\nVerified with the demo key. Decisions:\n")
    cases = [
        ("read app 42, Machine 3d8d9e1b, now", DEMO_APP, Action.READ, DEMO_NOW + 60),
        ("read app 43 (another app)", DEMO_OTHER_APP, Action.READ, DEMO_NOW + 60),
        ("write app 42", DEMO_APP, Action.WRITE, DEMO_NOW + 60),
        ("read app 42, two hours later", DEMO_APP, Action.READ, DEMO_NOW + 7200),
    ]
    for label, app, action, at in cases:
        access = FlyAccess(org_id=DEMO_ORG, app_id=app, machine=DEMO_MACHINE, action=action, at=at)
        try:
            verified.validate(access)
        except UnauthorizedError as exc:
            out.write(f"  DENIED   {label}\n           because: {exc}\n")
        else:
            out.write(f"  ALLOWED  {label}\n")
    out.write(f"\n(The demo's clock is fixed at {_utc(DEMO_NOW)}.)\n")
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
