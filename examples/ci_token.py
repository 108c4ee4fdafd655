"""Attenuate a token for a CI job: one app, one Machine, one hour.

A developer holds a broad token for their organization. A CI job only has
to restart one Machine of one app, so before handing the token to the job
the developer restricts it with ``restrict``, which needs no key: it only
adds caveats, and caveats only ever take permissions away. The job cannot
widen it again, and if it leaks, it is worth little.

The script then asks the API's ``Verifier`` about a handful of accesses and
prints which are allowed and, for the others, every reason they are not.

Run it: ``python examples/ci_token.py``.
"""

from __future__ import annotations

import json
import sys

from macaroons_authz import (
    Action,
    FlyAccess,
    Macaroon,
    MemoryKeyring,
    UnauthorizedError,
    Verifier,
    decode_token,
    encode_token,
    org_token,
    restrict,
    to_header,
    token_id,
)

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z: a fixed "now" keeps the output stable
ORG, APP, OTHER_APP = 1234, 42, 43
MACHINE, OTHER_MACHINE = "e784079b449483", "148e4d55f36278"


def main() -> int:
    # The platform's side: a keyring, and the developer's organization token.
    keyring = MemoryKeyring()
    keyring.generate()
    developer_token = encode_token(
        org_token(keyring.current(), ORG, expires_in=30 * 86400, now=NOW)
    )

    # The developer's side, with no key: decode the token they hold and
    # narrow it. ``restrict`` adds every caveat at once or none at all.
    ci = Macaroon.decode(decode_token(developer_token))
    restrict(
        ci,
        apps=[APP],
        machines={MACHINE: Action.READ | Action.CONTROL},
        expires_in=3600,
        now=NOW,
    )
    ci_header = to_header(ci)
    # The token is a bearer credential: it goes into the CI system's secret
    # store, never into logs. Its caveats, on the other hand, are safe to show.
    print(f"CI token ({len(ci_header)} characters) with caveats:")
    for caveat in ci.unsafe_caveats.to_json_value():
        print(f"  {json.dumps(caveat, separators=(',', ':'))}")
    # Attenuation keeps the nonce, so both tokens have one token id: revoking
    # either revokes both. A job that must be revocable on its own needs a
    # freshly minted token instead.
    same = token_id(ci) == token_id(decode_token(developer_token))
    print(f"same token id as the developer's token: {same}")

    verifier = Verifier(keyring)
    accesses = [
        ("restart the Machine", FlyAccess(org_id=ORG, app_id=APP, machine=MACHINE,
                                          action=Action.CONTROL, at=NOW + 60), True),
        ("read the Machine", FlyAccess(org_id=ORG, app_id=APP, machine=MACHINE,
                                       action=Action.READ, at=NOW + 60), True),
        ("delete the Machine", FlyAccess(org_id=ORG, app_id=APP, machine=MACHINE,
                                         action=Action.DELETE, at=NOW + 60), False),
        ("restart another Machine", FlyAccess(org_id=ORG, app_id=APP, machine=OTHER_MACHINE,
                                              action=Action.CONTROL, at=NOW + 60), False),
        ("read the app itself", FlyAccess(org_id=ORG, app_id=APP, action=Action.READ,
                                          at=NOW + 60), False),
        ("a Machine of another app", FlyAccess(org_id=ORG, app_id=OTHER_APP, machine=MACHINE,
                                               action=Action.CONTROL, at=NOW + 60), False),
        ("restart, two hours later", FlyAccess(org_id=ORG, app_id=APP, machine=MACHINE,
                                               action=Action.CONTROL, at=NOW + 7200), False),
    ]  # fmt: skip

    unexpected = 0
    for label, access, expected in accesses:
        try:
            verifier.authorize(ci_header, access)
            allowed, reasons = True, ""
        except UnauthorizedError as exc:
            allowed, reasons = False, "; ".join(str(e) for e in exc.leaves())
        unexpected += allowed != expected
        verdict = "allowed" if allowed else f"denied: {reasons}"
        print(f"{label:<26} {verdict}")

    # The developer's own token is untouched: attenuation made a new token.
    verifier.authorize(
        to_header(developer_token),
        FlyAccess(org_id=ORG, app_id=OTHER_APP, action=Action.DELETE, at=NOW + 60),
    )
    print("the developer's token still allows deleting another app")
    print("all decisions as expected" if not unexpected else f"{unexpected} unexpected decision(s)")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
