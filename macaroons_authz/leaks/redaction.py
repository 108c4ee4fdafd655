"""Taking tokens out of text: :func:`redact`, :func:`redact_tokens`, :class:`RedactingFilter`."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Final

from .decoders import LABEL_RE as _LABEL_RE
from .decoders import unescape as _unescape
from .scanner import _classify_macaroon, _fingerprint

__all__ = ["REDACTED", "RedactingFilter", "redact", "redact_tokens"]

#: What :func:`redact_tokens` puts where a token's payload was.
REDACTED: Final = "<redacted>"
# What follows a label, in either alphabet (a payload in the wrong one is
# still a secret), with the escapes of the scanner's runs.
_REDACT_RUN_RE = re.compile(
    r"(?:[A-Za-z0-9+/_-]+|\\/|\\u002[bBfF]|%2[bBfF]|&#(?:43|47|[xX]2[bBfF]);|\\\r?\n)*"
    r"(?:=|\\u003[dD]|%3[dD]|&#(?:61|[xX]3[dD]);){0,2}"
)
# A base64 run long enough to be a token written without its label.
_BARE_RUN_RE = re.compile(r"(?<![A-Za-z0-9+/_])[A-Za-z0-9+/]{32,}={0,2}")
# The credentials after an authorization scheme, unless a label starts them
# (labelled ones are redacted with their label kept).
_SCHEME_ARG_RE = re.compile(
    r"(?<![A-Za-z0-9])((?i:flyv1|bearer)[ \t]+)(?!f(?:m(?:2|1[ra])|o1)_|<)[^\s'\"]+"
)


def _redacted(secret: str) -> str:
    return f"<redacted:{_fingerprint(_unescape(secret))}>"


def _redact(text: str, mark: Callable[[str], str]) -> str:
    """*text* with each secret ``s`` (a labelled token whole) replaced by ``mark(s)``."""
    out: list[str] = []
    pos = 0
    while (lm := _LABEL_RE.search(text, pos)) is not None:
        run = _REDACT_RUN_RE.match(text, lm.end())
        assert run is not None  # the pattern matches the empty string
        end = run.end()
        out.append(text[pos : lm.end()])
        if end > lm.end():
            out.append(mark(text[lm.start() : end]))
        pos = end
    out.append(text[pos:])
    text = _BARE_RUN_RE.sub(
        lambda m: (
            mark(m.group()) if _classify_macaroon("", m.group()).kind == "token" else m.group()
        ),
        "".join(out),
    )
    return _SCHEME_ARG_RE.sub(lambda m: m.group(1) + mark(m.group()[len(m.group(1)) :]), text)


def redact(text: str) -> str:
    """*text* with every token's secret part replaced by its fingerprint.

    A token ``fm2_...`` becomes ``fm2_<redacted:1a2b3c4d5e6f7a8b>``: the
    label stays, and the 16 hex digits are the fingerprint a scan reports
    for that token (:attr:`TokenId.fingerprint`), so a log line can be
    matched with a finding or a revocation without holding the token.
    What is replaced is what :func:`redact_tokens` replaces.
    """
    return _redact(text, _redacted)


def redact_tokens(text: str) -> str:
    """*text* with the payload of every token-like string replaced by ``<redacted>``.

    For messages that may quote what a user typed (the command line's
    errors, logs). Replaced are: every run of token characters after a
    label (``fm2_``, ``fm1r_``, ``fm1a_``, ``fo1_``; the label is kept, so
    ``fm2_<redacted>`` says what was there), whatever its length, validity
    or base64 alphabet; base64 of 32 or more characters that decodes as a macaroon
    (a token pasted without its label); and the credentials after a
    ``FlyV1`` or ``Bearer`` scheme. Escapes are matched as the scanner
    matches them; tokens split into string literals or encoded otherwise
    are not recognised. :func:`redact` replaces the same text with each
    token's fingerprint instead.
    """
    return _redact(text, lambda _: REDACTED)


class RedactingFilter(logging.Filter):
    """A :class:`logging.Filter` that passes every record with its tokens :func:`redact`-ed.

    The message (with its arguments merged in), a formatted exception and a
    stack are redacted in the record itself, so every handler after the
    filter, and every formatter, sees only fingerprints. Attach it to the
    handlers that write logs out (a filter on a logger does not see records
    propagated from its children)::

        handler.addFilter(RedactingFilter())
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
