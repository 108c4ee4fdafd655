"""What ``python -m macaroons_authz inspect`` reads and shows: tokens, not verified.

Tokens are found in the input as the leak scanner finds them (a token in
quotes, a whole ``FLY_API_TOKEN="..."`` line, JSON escapes, members glued
without a comma), so ``inspect`` accepts whatever ``scan`` would report.
Roles follow Fly.io's rules: a token whose KID is the ticket of another
member's third-party caveat is that member's discharge; a proof whose
ticket no member holds is a "proof"; otherwise the location decides.
"""

from __future__ import annotations

import binascii
import datetime
import hashlib
import re
from collections.abc import Iterator
from typing import Any, NamedTuple, TextIO

from . import _msgpack
from ._gojson import go_json, unb64
from .caveats._base import Caveat, UnregisteredCaveat
from .caveats.core import Caveat3P, ValidityWindow
from .errors import DecodeError
from .leaks.scanner import _scan
from .macaroon import Macaroon

__all__ = ["Member", "describe", "printable", "read_members", "utc", "write_text"]

#: How many hex digits of a SHA-256 name a blob in text output.
BLOB_FINGERPRINT_HEX = 8
#: A KID longer than this (a discharge's, which is its ticket) is shown as a blob.
LONGEST_SHOWN_KID = 32

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FIELDS = ("nonce", "location", "caveats", "tail")


def printable(text: str) -> str:
    """*text* safe for a terminal line: control characters and undecodable bytes escaped."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def utc(ts: float) -> str:
    """*ts* as ``YYYY-MM-DD HH:MM:SSZ``, or as the number if no date holds it."""
    try:
        return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(ts)


def _relative(seconds: float) -> str:
    """A duration in its two largest units: ``2d 3h``, ``5m 10s``, ``42s``."""
    rest = abs(int(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return " ".join(parts[:2])


def _blob(data: bytes) -> str:
    """A blob named by its length and a short fingerprint, not its bytes."""
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:BLOB_FINGERPRINT_HEX]}"


# -- reading -----------------------------------------------------------------------


class Member(NamedTuple):
    """One token found in the input.

    ``macaroon`` is set for a token that decodes; ``error`` says why one
    that looks like a token does not; an ``fo1_`` token has neither.
    """

    label: str
    macaroon: Macaroon | None
    error: str | None


def read_members(text: str) -> list[Member]:
    """The tokens in *text*, in order, as the leak scanner finds them."""
    return [
        Member(hit.finding.label, hit.macaroon, _why_malformed(hit.token))
        if hit.finding.kind == "malformed"
        else Member(hit.finding.label, hit.macaroon, None)
        for hit in _scan((text,), None)
    ]


def _why_malformed(token: str | None) -> str:
    if token is None:
        return "too long to be a token"
    label, _, payload = token.partition("_")
    if label == "fo1":
        return f"an fo1_ token has 43 characters after its label, this one {len(payload)}"
    try:
        data = unb64(payload)
    except (binascii.Error, ValueError):
        # A token cut short mostly ends inside a 4-character group.
        whole = len(payload) - len(payload) % 4
        try:
            data = unb64(payload[:whole]) if 0 < whole < len(payload) else b""
        except (binascii.Error, ValueError):
            data = b""
        if not data:
            return "not base64"
        try:
            Macaroon.decode(data)
        except DecodeError:
            return _truncated(data)
        return f"its base64 ends inside a group of 4 characters (after {len(payload)})"
    try:
        Macaroon.decode(data)
    except DecodeError as exc:
        return _truncated(data) if str(exc).endswith("truncated") else str(exc)
    return "not a token"  # the scanner refused what decodes: not reached


def _truncated(data: bytes) -> str:
    """Where *data*, a token cut short, ends: the byte and the field it cuts."""
    where = f"truncated at byte {len(data)} of the token"
    if data[:1] != b"\x94":
        return where
    pos = 1
    for field in _FIELDS:
        try:
            pos = _msgpack.value_end(data, pos)
        except DecodeError:
            return f"{where}, in its {field}"
    return where


# -- describing --------------------------------------------------------------------


def caveat_json(caveat: Caveat) -> dict[str, Any]:
    """``{"type", "body"}`` as ``flyctl tokens debug`` shows a caveat."""
    if isinstance(caveat, UnregisteredCaveat):
        return {"type": str(caveat.type_number), "unknown": True}
    return {"type": caveat.json_type, "body": caveat.to_json()}


def _roles(members: list[Member], location: str) -> list[tuple[str, list[int]]]:
    """Each member's role and, for a discharge, the numbers of the tokens it discharges."""
    owners: dict[bytes, list[int]] = {}
    for i, member in enumerate(members, 1):
        if member.macaroon is not None:
            for cav in member.macaroon.unsafe_caveats.of_type(Caveat3P):
                if cav.ticket is not None:
                    owners.setdefault(cav.ticket, []).append(i)
    roles: list[tuple[str, list[int]]] = []
    for i, member in enumerate(members, 1):
        m = member.macaroon
        if m is None:
            roles.append(("malformed" if member.error else "Fly OAuth token (not a macaroon)", []))
            continue
        # Tokens sharing one third-party caveat share its ticket: one discharge serves all.
        parents = [j for j in owners.get(m.nonce.kid or b"", ()) if j != i]
        if parents:
            roles.append(("discharge", parents))
        elif m.nonce.proof:
            roles.append(("proof", []))
        elif m.location == location:
            roles.append(("permission", []))
        else:
            roles.append(("token for another location", []))
    return roles


def describe(members: list[Member], location: str, now: float) -> dict[str, Any]:
    """The JSON document ``inspect --json`` prints."""
    roles = _roles(members, location)
    # A ticket, by the member that discharges it (a discharge's KID is its ticket).
    discharged_by: dict[bytes, int] = {}
    for i, (member, (_, parents)) in enumerate(zip(members, roles, strict=True), 1):
        if parents and member.macaroon is not None:
            discharged_by.setdefault(member.macaroon.nonce.kid or b"", i)
    out = []
    for member, (role, parents) in zip(members, roles, strict=True):
        entry: dict[str, Any] = {"label": member.label, "role": role}
        if parents:
            entry["discharge_of"] = parents
        if member.error is not None:
            entry["error"] = member.error
        m = member.macaroon
        if m is None:
            out.append(entry)
            continue
        kid = m.nonce.kid or b""
        entry.update(
            location=m.location,
            kid=kid.hex() if len(kid) <= 32 else f"{kid[:16].hex()}... ({len(kid)} bytes)",
            token_id=str(m.nonce.uuid),
            caveats=[caveat_json(c) for c in m.unsafe_caveats],
        )
        windows = [
            {
                "not_before": utc(w.not_before),
                "not_after": utc(w.not_after),
                "status": (
                    f"expired {_relative(now - w.not_after)} ago"
                    if now > w.not_after
                    else f"not valid for {_relative(w.not_before - now)}"
                    if now < w.not_before
                    else f"expires in {_relative(w.not_after - now)}"
                ),
            }
            for w in m.unsafe_caveats.of_type(ValidityWindow)
        ]
        if windows:
            entry["validity"] = windows
        third = [
            {"location": c.location, "discharged_by": discharged_by.get(c.ticket or b"")}
            for c in m.unsafe_caveats.of_type(Caveat3P)
        ]
        if third:
            entry["third_parties"] = third
        out.append(entry)
    return {"verified": False, "tokens": out}


# -- text ----------------------------------------------------------------------------


def _summarised(value: Any) -> Any:
    """A caveat's JSON with every third-party caveat's blobs named, not printed."""
    if isinstance(value, list):
        return [_summarised(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("type") == Caveat3P.name and isinstance(value.get("body"), dict):
        body = dict(value["body"])
        for field in ("VerifierKey", "Ticket"):
            if isinstance(body.get(field), str):
                body[field] = _blob(unb64(body[field]))
        return {**value, "body": body}
    return {k: _summarised(v) for k, v in value.items()}


def _kid_text(kid: bytes) -> str:
    return kid.hex() if len(kid) <= LONGEST_SHOWN_KID else _blob(kid)


def _lines(doc: dict[str, Any], members: list[Member]) -> Iterator[str]:
    yield "UNVERIFIED: read from the tokens, not checked against any key."
    for i, (tok, member) in enumerate(zip(doc["tokens"], members, strict=True), 1):
        role = tok["role"]
        if "discharge_of" in tok:
            *rest, last = [str(n) for n in tok["discharge_of"]]
            role = (
                f"discharge of token {last}"
                if not rest
                else (f"discharge of tokens {', '.join(rest)} and {last}")
            )
        yield ""
        yield f"token {i}: {tok['label']} {role}"
        if "error" in tok:
            yield f"  error     {tok['error']}"
        m = member.macaroon
        if m is None:
            continue
        yield f"  location  {m.location}"
        yield f"  kid       {_kid_text(m.nonce.kid or b'')}"
        yield f"  token id  {tok['token_id']}"
        for cav in tok["caveats"]:
            if cav.get("unknown"):
                yield f"  caveat    unknown caveat type {cav['type']} (always denies)"
            else:
                summary = _summarised(cav)
                yield f"  caveat    {cav['type']} {go_json(summary['body'])}"
        for w in tok.get("validity", []):
            yield f"  valid     {w['not_before']} to {w['not_after']} ({w['status']})"
        for third in tok.get("third_parties", []):
            if third["discharged_by"] is None:
                yield f"  needs     a discharge from {third['location']}"
            else:
                by = third["discharged_by"]
                yield f"  3P        {third['location']}: discharged by token {by}"


def write_text(doc: dict[str, Any], members: list[Member], out: TextIO) -> None:
    """The text form of :func:`describe`'s document; caveats' JSON on one line each."""
    # What a token says is its author's text: no escape sequences reach the terminal.
    out.write("".join(printable(line) + "\n" for line in _lines(doc, members)))
