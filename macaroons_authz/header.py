"""Token strings and ``Authorization`` headers (spec section 5).

A token string is a label and the standard, padded base64 of the token:
``fm2_...``. A header is ``FlyV1 `` and token strings joined by commas with
no spaces. The label never decides what a token is for; its location does.
"""

from __future__ import annotations

import base64
import binascii

from ._gojson import unb64
from .caveats.registry import CaveatRegistry
from .errors import DecodeError
from .macaroon import Macaroon

__all__ = [
    "LABEL",
    "MACAROON_LABELS",
    "MAX_HEADER_LENGTH",
    "MAX_HEADER_TOKENS",
    "OAUTH_LABEL",
    "decode_token",
    "encode_token",
    "parse_header",
    "parse_permission_and_discharge_tokens",
    "split_header",
    "strip_scheme",
    "to_header",
    "trim_space",
]

#: The label Go writes on every token.
LABEL = "fm2"
#: Labels of macaroons: current, legacy "root" (permission) and legacy "auth".
MACAROON_LABELS = frozenset({"fm2", "fm1r", "fm1a"})
#: Label of Fly.io OAuth tokens, which are not macaroons.
OAUTH_LABEL = "fo1"
#: The longest header (in characters) that is parsed at all.
MAX_HEADER_LENGTH = 1024 * 1024
#: The most tokens one header may hold.
MAX_HEADER_TOKENS = 256

_SCHEMES = ("flyv1", "bearer")
_COMMON_START = "FlyV1 fm2_"
# What Go's strings.TrimSpace trims (unicode.IsSpace): str.strip() would also
# trim the separators U+001C to U+001F, which Go keeps (and then fails on).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def encode_token(token: Macaroon | bytes) -> str:
    """The token string ``fm2_<base64>`` of a token or of its encoded bytes."""
    data = token.encode() if isinstance(token, Macaroon) else token
    if not isinstance(data, bytes):
        raise TypeError(f"expected a Macaroon or bytes, not {type(token).__name__}")
    return f"{LABEL}_{base64.b64encode(data).decode('ascii')}"


def to_header(*tokens: Macaroon | bytes | str) -> str:
    """The ``Authorization`` header value ``FlyV1 tok1,tok2,...``.

    Tokens may be :class:`Macaroon` objects, their encoded bytes, or token
    strings (kept as they are, so ``fo1_`` tokens pass through).
    """
    if not tokens:
        raise ValueError("a header needs at least one token")
    parts = []
    for tok in tokens:
        if isinstance(tok, str):
            if not tok or "," in tok or tok != tok.strip() or " " in tok:
                raise DecodeError("a token string may not be empty or hold commas or spaces")
            parts.append(tok)
        else:
            parts.append(encode_token(tok))
    return "FlyV1 " + ",".join(parts)


def trim_space(text: str) -> str:
    """*text* without the outer white space Go's ``strings.TrimSpace`` removes."""
    return text.strip(_GO_SPACE)


def strip_scheme(header: str) -> str:
    """Drop leading ``FlyV1``/``Bearer`` schemes (any case, repeated) and outer spaces."""
    header = header.strip(_GO_SPACE)
    while " " in header:
        first, _, rest = header.partition(" ")
        if first.lower() not in _SCHEMES:
            break
        header = rest.strip(_GO_SPACE)
    return header


def split_header(header: str) -> list[str]:
    """The token strings of a header, scheme removed, split on commas (not trimmed)."""
    if not isinstance(header, str):
        raise TypeError(f"header must be a str, not {type(header).__name__}")
    if len(header) > MAX_HEADER_LENGTH:
        raise DecodeError(f"header longer than {MAX_HEADER_LENGTH} characters")
    pieces = strip_scheme(header).split(",")
    if len(pieces) > MAX_HEADER_TOKENS:
        raise DecodeError(f"more than {MAX_HEADER_TOKENS} tokens in one header")
    return pieces


def decode_token(token: str) -> bytes:
    """The token bytes of one ``fm2_``/``fm1r_``/``fm1a_`` token string.

    Raises:
        DecodeError: not a macaroon label (``fo1_`` included), bad base64,
            or an empty payload.
    """
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    return _decode_payload(*token.partition("_"))


def _decode_payload(label: str, sep: str, payload: str) -> bytes:
    """The token bytes of a token string split at its first ``_``."""
    if not sep:
        raise DecodeError("bad token: no label")
    if label not in MACAROON_LABELS:
        raise DecodeError("bad token: invalid token prefix")
    try:
        data = unb64(payload)
    except (binascii.Error, ValueError):
        raise DecodeError("bad token: invalid base64") from None
    if not data:
        raise DecodeError("bad token: empty")
    return data


def parse_header(header: str) -> list[bytes]:
    """The token bytes of every macaroon in a header (spec 5.3).

    The scheme is optional; pieces are not trimmed (``"fm2_a, fm2_b"`` is an
    error); ``fo1_`` tokens are skipped.

    Raises:
        DecodeError: a piece is not a token, or no macaroon is found.
    """
    # The header nearly every request carries, "FlyV1 fm2_<base64>" with one
    # token, read in one step (a third of a full check at one caveat went
    # to the general path); anything this does not read as the general path
    # would is left to the general path, which decides.
    if (
        type(header) is str
        and header[:10] == _COMMON_START
        and "," not in header
        and len(header) <= MAX_HEADER_LENGTH
    ):
        try:
            data = unb64(header[10:])
        except (binascii.Error, ValueError):
            pass
        else:
            if data:
                return [data]
    return _parse_pieces(header)


def _parse_pieces(header: str) -> list[bytes]:
    """:func:`parse_header`'s general path: every scheme, label and piece."""
    tokens = []
    for piece in split_header(header):
        parts = piece.partition("_")
        if parts[0] != OAUTH_LABEL or not parts[1]:
            tokens.append(_decode_payload(*parts))
    if not tokens:
        raise DecodeError("bad token: no valid tokens found")
    return tokens


def parse_permission_and_discharge_tokens(header: str, location: str) -> tuple[bytes, list[bytes]]:
    """Split a header into the permission token for *location* and the rest (spec 5.4).

    Tokens that do not decode are dropped. Every token whose location is
    not *location* is a discharge candidate.

    Raises:
        DecodeError: the header is malformed, or holds no or several
            permission tokens for *location*.
    """
    (data, _), others = _split_by_location(header, location)
    return data, [d for d, _ in others]


def _split_by_location(
    header: str, location: str, registry: CaveatRegistry | None = None
) -> tuple[tuple[bytes, Macaroon], list[tuple[bytes, Macaroon]]]:
    """The permission token of *header* for *location* and the other tokens, as bytes and decoded.

    Tokens that do not decode are dropped, as Go does.

    Raises:
        DecodeError: the header is malformed, or holds no or several
            permission tokens for *location*.
    """
    permission: list[tuple[bytes, Macaroon]] = []
    others: list[tuple[bytes, Macaroon]] = []
    for data in parse_header(header):
        try:
            token = Macaroon.decode(data, registry)
        except DecodeError:
            continue
        (permission if token.location == location else others).append((data, token))
    if not permission:
        raise DecodeError("no permission token")
    if len(permission) > 1:
        raise DecodeError("multiple permission tokens")
    return permission[0], others
