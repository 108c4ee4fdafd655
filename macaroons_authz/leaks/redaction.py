"""Taking tokens out of a message: :func:`redact_tokens`."""

from __future__ import annotations

import re
from typing import Final

from .scanner import _LABEL_RE, _classify_macaroon

__all__ = ["REDACTED", "redact_tokens"]

#: What :func:`redact_tokens` puts where a token's payload was.
REDACTED: Final = "<redacted>"
# What follows a label, in either alphabet (a payload in the wrong one is
# still a secret), with the escapes of the scanner's runs.
_REDACT_RUN_RE = re.compile(
    r"(?:[A-Za-z0-9+/_-]+|\\/|\\u002[bBfF]|%2[bBfF]|\\\r?\n)*(?:=|\\u003[dD]|%3[dD]){0,2}"
)
# A base64 run long enough to be a token written without its label.
_BARE_RUN_RE = re.compile(r"(?<![A-Za-z0-9+/_])[A-Za-z0-9+/]{32,}={0,2}")
# The credentials after an authorization scheme, unless a label starts them
# (labelled ones are redacted with their label kept).
_SCHEME_ARG_RE = re.compile(
    r"(?<![A-Za-z0-9])((?i:flyv1|bearer)[ \t]+)(?!f(?:m(?:2|1[ra])|o1)_|<)[^\s'\"]+"
)


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
    are not recognised.
    """
    out: list[str] = []
    pos = 0
    while (lm := _LABEL_RE.search(text, pos)) is not None:
        run = _REDACT_RUN_RE.match(text, lm.end())
        assert run is not None  # the pattern matches the empty string
        end = run.end()
        out.append(text[pos : lm.end()])
        if end > lm.end():
            out.append(REDACTED)
        pos = end
    out.append(text[pos:])
    text = _BARE_RUN_RE.sub(
        lambda m: REDACTED if _classify_macaroon("", m.group()).kind == "token" else m.group(),
        "".join(out),
    )
    return _SCHEME_ARG_RE.sub(lambda m: m.group(1) + REDACTED, text)
