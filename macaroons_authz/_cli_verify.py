"""What ``python -m macaroons_authz verify`` decides and prints, for one key.

A header may hold several permission tokens (``fly tokens create ssh``
emits two; flyctl's sessions hold one per organization). They are decided
as :meth:`Verifier.authorize <macaroons_authz.Verifier.authorize>` decides
them: each token is verified with the discharges of its own tickets, all of
them within one HMAC budget, and the access is allowed by the first token,
in header order, that verifies and allows it. The command line says which
token that is, and every other token's reason, by the token's number among
the header's permission tokens and its token id; never a tail or a token.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import TextIO

import attrs

from . import crypto
from ._gojson import go_json
from ._inspect import caveat_json, printable
from ._verification import verification_run
from .access import FlyAccess
from .caveats.caveat_set import CaveatSet
from .decision import _matched
from .errors import UnauthorizedError, VerificationError
from .leaks.github import _signature_ok
from .macaroon import Macaroon
from .verifier import Verifier

__all__ = ["OneKey", "verify"]

WIDTH = 80


class OneKey:
    """A keyring of one key: it answers for the key's own KID only, as a keyring does."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.kid = crypto.kid_for_key(key)

    def __repr__(self) -> str:
        return f"<OneKey kid={self.kid.hex()}>"

    def key_for(self, kid: bytes) -> bytes | None:
        return self.key if kid == self.kid else None


def _kid_hex(kid: bytes) -> str:
    """A KID in hex (KIDs are not secret); a long one (a ticket) cut short."""
    return kid.hex() if len(kid) <= 32 else f"{kid[:16].hex()}... ({len(kid)} bytes)"


def _refusal(token: Macaroon, keyring: OneKey) -> str | None:
    """Why *token* is not this key's, in words a key's owner can act on; ``None`` if it is."""
    kid = token.nonce.kid or b""
    if kid != keyring.kid:
        return f"token's key id {_kid_hex(kid)} is not this key's {keyring.kid.hex()}"
    if not _signature_ok(token, keyring.key_for):
        return "signature does not match this key"
    return None


def _wrap(prefix: str, text: str, out: TextIO, indent: int | None = None) -> None:
    """Prose (a denial's reason) wrapped to :data:`WIDTH`; never a token's JSON."""
    lines = textwrap.wrap(
        printable(text),
        width=WIDTH,
        initial_indent=prefix,
        subsequent_indent=" " * (len(prefix) if indent is None else indent),
        break_on_hyphens=False,
        break_long_words=False,
    )
    out.write("\n".join(lines or [prefix.rstrip()]) + "\n")


def _write_caveats(caveats: CaveatSet, access: FlyAccess | None, indent: str, out: TextIO) -> None:
    """Each caveat's JSON on one line and, given an access, whether it passed."""
    for cav in caveats:
        body = go_json(caveat_json(cav).get("body"))
        if access is None:
            out.write(printable(f"{indent}caveat  {cav.json_type} {body}") + "\n")
            continue
        if cav.attestation:
            verdict = "attests"
        else:
            err = cav.prohibits(access)
            verdict = "pass" if err is None else f"FAIL: {err}"
        out.write(printable(f"{indent}{cav.json_type} {body} -> {verdict}") + "\n")


def verify(
    verifier: Verifier,
    keyring: OneKey,
    trusted_3ps: Mapping[str, Sequence[bytes]],
    header: str,
    permissions: Sequence[Macaroon],
    others: Sequence[Macaroon],
    access: FlyAccess | None,
    *,
    explain: bool,
    out: TextIO,
) -> int:
    """Verify *header*, parsed into *permissions* and *others*, and print the outcome.

    *verifier* holds *keyring* and *trusted_3ps*. Returns the exit status:
    0 allowed (without *access*: some permission token valid), 1 denied or
    not authentic.
    """
    if len(permissions) == 1:
        return _verify_one(verifier, keyring, header, permissions[0], access, explain, out)
    return _verify_several(keyring, trusted_3ps, permissions, others, access, explain, out)


def _verify_one(
    verifier: Verifier,
    keyring: OneKey,
    header: str,
    token: Macaroon,
    access: FlyAccess | None,
    explain: bool,
    out: TextIO,
) -> int:
    try:
        # The Verifier refuses these too; checked first to say which it is.
        refusal = _refusal(token, keyring)
        if refusal is not None:
            raise VerificationError(refusal)
        caveats = verifier.verify(header)
    except VerificationError as exc:
        out.write(f"NOT AUTHENTIC token {token.nonce.uuid}\n  - {printable(str(exc))}\n")
        return 1
    if access is None:
        out.write(f"VALID token {token.nonce.uuid}: signature and discharges verified\n")
        if explain:
            _write_caveats(caveats, None, "  ", out)
        return 0
    if explain:
        _write_caveats(caveats, access, "  ", out)
    try:
        caveats.validate(access)
    except UnauthorizedError as exc:
        out.write(f"DENIED token {token.nonce.uuid}\n")
        for cause in exc.leaves():
            _wrap("  - ", str(cause), out)
        return 1
    out.write(f"ALLOWED token {token.nonce.uuid}\n")
    return 0


@attrs.frozen
class _Outcome:
    """One permission token's fate: its caveats if it verified, and why it did not allow."""

    number: int
    token: Macaroon
    caveats: CaveatSet | None
    error: VerificationError | UnauthorizedError | None

    def line(self, ok: str) -> str:
        """``token N VERDICT: reason``, *ok* the verdict of no error; never a secret."""
        if isinstance(self.error, VerificationError):
            return f"token {self.number} NOT AUTHENTIC: {self.error}"
        if isinstance(self.error, UnauthorizedError):
            causes = "; ".join(str(c) for c in self.error.leaves())
            return f"token {self.number} DENIED: {causes}"
        return f"token {self.number} {ok}"

    def write(self, ok: str, access: FlyAccess | None, explain: bool, out: TextIO) -> None:
        """The token's line; with *explain*, its ids and the caveats it verified."""
        _wrap("  - ", self.line(ok), out, indent=6)
        if explain:
            kid = _kid_hex(self.token.nonce.kid or b"")
            out.write(f"      token id {self.token.nonce.uuid}\n      key id   {kid}\n")
            if self.caveats is not None:
                _write_caveats(self.caveats, access, "      ", out)


def _verify_several(
    keyring: OneKey,
    trusted_3ps: Mapping[str, Sequence[bytes]],
    permissions: Sequence[Macaroon],
    others: Sequence[Macaroon],
    access: FlyAccess | None,
    explain: bool,
    out: TextIO,
) -> int:
    outcomes: list[_Outcome] = []
    allowed: _Outcome | None = None
    # One HMAC budget for the header, as the Verifier spends on it.
    with verification_run():
        for number, token in enumerate(permissions, 1):
            caveats: CaveatSet | None = None
            error: VerificationError | UnauthorizedError | None = None
            try:
                refusal = _refusal(token, keyring)
                if refusal is not None:
                    raise VerificationError(refusal)
                caveats = token.verify(keyring.key, _matched(token, others), trusted_3ps)
                if access is not None:
                    caveats.validate(access)
            except (VerificationError, UnauthorizedError) as exc:
                error = exc
            outcomes.append(_Outcome(number, token, caveats, error))
            if access is not None and error is None and allowed is None:
                allowed = outcomes[-1]
                if not explain:
                    break  # the first token that allows decides
    return _report(outcomes, allowed, len(permissions), access, explain, out)


def _report(
    outcomes: Sequence[_Outcome],
    allowed: _Outcome | None,
    count: int,
    access: FlyAccess | None,
    explain: bool,
    out: TextIO,
) -> int:
    """Print the verdict and each token's line; return the exit status."""
    valid = [o for o in outcomes if o.caveats is not None]
    if allowed is not None:
        out.write(f"ALLOWED by token {allowed.number} of {count} ({allowed.token.nonce.uuid})\n")
        if explain:
            for o in outcomes:
                o.write("ALLOWS", access, explain, out)
        return 0
    if not valid:
        out.write(f"NOT AUTHENTIC: none of {count} permission tokens verified\n")
    elif access is None:
        out.write(f"VALID: {len(valid)} of {count} permission tokens verified\n")
    else:
        out.write(f"DENIED: none of {count} permission tokens allows the access\n")
    for o in outcomes:
        o.write("VALID: signature and discharges verified", access, explain, out)
    return 0 if valid and access is None else 1
