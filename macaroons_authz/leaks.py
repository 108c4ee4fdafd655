r"""Leaked-token detection and GitHub secret-scanning alerts.

Two halves:

* **Scanning.** :func:`find_tokens` searches a string and :func:`scan_paths`
  files and directory trees for Fly.io token strings (spec section 5) and
  yields a :class:`Finding` for each: where it stood, under which label and
  in what context, whether it is a real token, and a :class:`TokenId` that
  names the token without revealing it. A finding never holds the token
  text, so printing or logging one is safe; :func:`extract_tokens` is the
  one, explicit, way to get the token strings themselves (to revoke them),
  and :func:`redact_tokens` takes them out of a message.

* **GitHub's secret-scanning partner program.** :func:`verify_github_alert`
  checks the ECDSA signature GitHub puts on an alert and parses it;
  :func:`classify_github_alert` decides which reported tokens are real
  (true positives) under the caller's keys, optionally revokes them, and
  builds the feedback GitHub accepts; :func:`handle_github_alert` does both.

What counts as a token
----------------------

A *candidate* is a label (``fm2_``, ``fm1r_``, ``fm1a_`` or ``fo1_``)
followed by token characters. Labels are found with one compiled regular
expression; everything else is done per candidate, so the cost of a scan is
that of the label search plus a little per candidate. A candidate may start
anywhere (a token glued to an identifier is still leaked) and has no length
limit short of :data:`MAX_CANDIDATE_CHARS`.

Each candidate gets a :attr:`Finding.kind`:

``"token"``
    A macaroon label whose payload decodes as base64 and then parses as a
    token (:meth:`Macaroon.decode <macaroons_authz.Macaroon.decode>`):
    structurally valid. Nothing checks its signature, which needs the root
    key; :func:`classify_github_alert` does that for callers that have it.
``"opaque"``
    A ``fo1_`` token: a Fly.io OAuth token, which is not a macaroon and
    cannot be checked offline. It is reported when it has the shape public
    scanners use for it (``fo1_`` and exactly 43 base64url characters) and
    does not look like a placeholder. Being unverifiable, it is kept apart
    from both real macaroons and malformed ones.
``"malformed"``
    Looks like a token (at least 32 payload characters, at least 12 of them
    distinct) but does not parse: random base64 after a label, a truncated
    or damaged token, an ``fo1_`` string of the wrong length. Reported so a
    damaged leak is not missed, and always kept apart from real tokens.

Shorter or low-variety candidates, such as the placeholders ``fm2_xxx``,
``fm2_...``, ``FlyV1 fm2_<token>`` or ``fm2_${TOKEN}``, are not reported.

Escaped and split tokens
------------------------

The payload may be written with these escapes, which are undone before
decoding (the token id is of the unescaped token string):

* JSON: ``\/`` for ``/``, and ``\u002b``, ``\u002f``, ``\u003d`` (any case)
  for ``+``, ``/``, ``=``;
* URLs: ``%2B``, ``%2F``, ``%3D`` (any case);
* a backslash immediately followed by a line break (C, shell and Python
  line continuation); the continuation starts at the beginning of the next
  line, with no leading whitespace skipped.

A token split into adjacent string literals is joined when the piece
before the split is not already a complete token: a closing quote (``"`` or
``'``), then optional spaces or tabs with at most one line break, optionally
one ``+`` or ``.`` operator or a backslash line continuation (again with
spaces and one line break around it), then an opening quote of the same
kind. This covers Python and C implicit concatenation, ``+``-concatenation
in JavaScript, Java, Go and Python, PHP's ``.``, and shell continuation.
Other encodings (base64 of the whole string, HTML entities, ``\u`` escapes
of letters, tokens split by anything else) are not undone.

Context
-------

:attr:`Finding.context` is ``"header"`` when the token follows a ``FlyV1``
or ``Bearer`` scheme (any case), directly or as a later member of the
comma-separated list that follows it; ``"bundle"`` when it is a member of a
comma-separated list of token strings (commas optionally followed by
spaces) with no scheme in front; ``"bare"`` otherwise.

Positions
---------

Lines and columns are 1-based and point at the first character of the
label. Lines are ended by ``\n`` (so ``\r\n`` files count correctly; a lone
``\r`` does not end a line). Columns count characters (code points) of the
text; files are read as UTF-8 with undecodable bytes counted one character
each.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import json
import os
import re
import stat
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Literal, NamedTuple

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import crypto
from .caveats._base import load_json, unb64
from .errors import DecodeError, VerificationError
from .macaroon import Macaroon
from .nonce import Nonce

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "GITHUB_KEY_IDENTIFIER_HEADER",
    "GITHUB_SIGNATURE_HEADER",
    "MAX_CANDIDATE_CHARS",
    "AlertVerificationError",
    "Finding",
    "GitHubFeedback",
    "GitHubPublicKeys",
    "GitHubTokenMatch",
    "TokenId",
    "classify_github_alert",
    "extract_tokens",
    "find_tokens",
    "handle_github_alert",
    "redact_tokens",
    "scan_paths",
    "verify_github_alert",
]

#: What a :class:`Finding` is: see :attr:`Finding.kind`.
Kind = Literal["token", "opaque", "malformed"]
#: Where a :class:`Finding` stood: see :attr:`Finding.context`.
Context = Literal["header", "bundle", "bare"]

#: How many bytes :func:`scan_paths` reads from a file at a time.
DEFAULT_CHUNK_SIZE: Final = 1024 * 1024
#: The longest candidate (label, payload and escapes, in characters) that is
#: examined. A valid token is at most :data:`~macaroons_authz.MAX_TOKEN_SIZE`
#: bytes, under 350,000 base64 characters, so with escapes and line
#: continuations a real one fits many times over; a longer run is reported
#: as ``"malformed"`` without a fingerprint and skipped.
MAX_CANDIDATE_CHARS: Final = 4 * 1024 * 1024

#: The header naming which of GitHub's public keys signed an alert.
GITHUB_KEY_IDENTIFIER_HEADER: Final = "Github-Public-Key-Identifier"
#: The header holding the base64 DER ECDSA signature of an alert's body.
GITHUB_SIGNATURE_HEADER: Final = "Github-Public-Key-Signature"

_OAUTH_LABEL = "fo1_"
_OAUTH_LENGTH = 43
_FINGERPRINT_HEX = 16
_MIN_SUSPICIOUS_LENGTH = 32
_MIN_DISTINCT = 12
_BINARY_SNIFF = 8192
_LOOKBEHIND = 96
_MARGIN = 512  # > the longest fixed-size look-ahead below (joins, bundle links)
_CARRY_LABEL = 4  # a label cut by the buffer's end is at most this long
_LONGEST_ESCAPE = 8  # a run that stops this far from the buffer's end has ended

_LABEL_RE = re.compile(r"f(?:m(?:2|1[ra])|o1)_")
# Base64 characters and the escapes of the documented subset, then at most
# two padding characters, which end a token.
_MAC_RUN_RE = re.compile(
    r"(?:[A-Za-z0-9+/]+|\\/|\\u002[bBfF]|%2[bBfF]|\\\r?\n)*(?:=|\\u003[dD]|%3[dD]){0,2}"
)
_OAUTH_RUN_RE = re.compile(r"[A-Za-z0-9_-]*")
_WS = r"[ \t]{0,64}(?:\r?\n[ \t]{0,64})?"
_JOIN_RE = re.compile(rf"""(["']){_WS}(?:(?:[+.]|\\(?=\r?\n)){_WS})?\1""")
_NEXT_MEMBER_RE = re.compile(r",[ \t]{0,64}(?=f(?:m(?:2|1[ra])|o1)_)")
_SCHEME_RE = re.compile(r"(?<![A-Za-z0-9])(?i:flyv1|bearer)[ \t]{1,64}\Z")
_ESCAPE_RE = re.compile(r"\\/|\\u00(?:2[bBfF]|3[dD])|%(?:2[bBfF]|3[dD])|\\\r?\n")
_UNESCAPE = {
    "\\/": "/",
    "\\u002b": "+",
    "\\u002f": "/",
    "\\u003d": "=",
    "%2b": "+",
    "%2f": "/",
    "%3d": "=",
    "\\\n": "",
    "\\\r\n": "",
}


def _unescape(raw: str) -> str:
    if "\\" not in raw and "%" not in raw:
        return raw
    return _ESCAPE_RE.sub(lambda m: _UNESCAPE[m.group().lower()], raw)


def _sha256_hex(text: str) -> str:
    try:
        # Undecodable bytes of a scanned file come back as the bytes they were.
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # A lone surrogate from JSON (a `\ud800` escape) has no UTF-8 form.
        data = text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def _fingerprint(token: str) -> str:
    return _sha256_hex(token)[:_FINGERPRINT_HEX]


def _suspicious(payload: str) -> bool:
    return len(payload) >= _MIN_SUSPICIOUS_LENGTH and len(set(payload)) >= _MIN_DISTINCT


# -- findings -----------------------------------------------------------------


@attrs.frozen
class TokenId:
    """Names a token without revealing it.

    Attributes:
        kid: the key id from the token's nonce, as hex (for a discharge, its
            whole ticket, which is sealed for the third party); ``None`` if
            the candidate is not a parsed macaroon.
        rnd: the nonce's random bytes, as hex; ``None`` likewise. A token
            and every attenuation of it share ``kid`` and ``rnd``.
        fingerprint: the first 16 hex digits of the SHA-256 of the exact
            (unescaped) token string, which tells attenuations apart;
            ``None`` only for a candidate over :data:`MAX_CANDIDATE_CHARS`.

    None of these lets anyone use or attenuate the token: the secret part
    of a token, its tail, is in none of them.
    """

    kid: str | None
    rnd: str | None
    fingerprint: str | None

    def __str__(self) -> str:
        return f"{self.kid or '-'}:{self.rnd or '-'}:{self.fingerprint or '-'}"

    @property
    def uuid(self) -> str | None:
        """The nonce UUID Fly.io logs for the token and its attenuations, if parsed."""
        if self.kid is None or self.rnd is None:
            return None
        return str(Nonce(bytes.fromhex(self.kid), bytes.fromhex(self.rnd)).uuid)

    def to_dict(self) -> dict[str, str | None]:
        """``{"kid": ..., "rnd": ..., "fingerprint": ...}``."""
        return {"kid": self.kid, "rnd": self.rnd, "fingerprint": self.fingerprint}


@attrs.frozen
class Finding:
    """One token-like string found in a text or file.

    A finding holds where the string stood and what it is, never the string
    itself: its ``repr``, ``str`` and JSON are safe to log. Use
    :func:`extract_tokens` to get token strings.

    Attributes:
        path: the file the string was found in; ``None`` for a string given
            to :func:`find_tokens` without one.
        line: 1-based line of the label's first character.
        column: 1-based column (in characters) of the label's first character.
        label: ``"fm2_"``, ``"fm1r_"``, ``"fm1a_"`` or ``"fo1_"``.
        context: ``"header"``, ``"bundle"`` or ``"bare"`` (see the module's
            documentation).
        kind: ``"token"`` (a structurally valid macaroon), ``"opaque"`` (an
            ``fo1_`` token, which cannot be checked) or ``"malformed"``
            (looks like a token but does not parse). Filter on it: only
            ``"token"`` findings are known to be real macaroons.
        token_id: the :class:`TokenId`.
        location: the macaroon's location (its verifier's URL) for a
            ``"token"``; ``None`` otherwise.
    """

    path: str | None
    line: int
    column: int
    label: str
    context: Context
    kind: Kind
    token_id: TokenId
    location: str | None = None

    def __str__(self) -> str:
        where = self.path if self.path is not None else "<text>"
        return (
            f"{where}:{self.line}:{self.column}: {self.kind} {self.label} "
            f"({self.context}) id={self.token_id}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready dict (the token text is not in it)."""
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "label": self.label,
            "context": self.context,
            "kind": self.kind,
            "token_id": self.token_id.to_dict(),
            "location": self.location,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON object."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


# -- the scanner --------------------------------------------------------------


class _Classified(NamedTuple):
    kind: Kind | None  # None: not reported
    token: str  # the unescaped token string
    macaroon: Macaroon | None = None  # for "token"
    data: bytes | None = None  # its decoded bytes


class _Hit(NamedTuple):
    finding: Finding
    token: str | None  # None only for an oversized candidate
    macaroon: Macaroon | None
    data: bytes | None


def _ends_padded(piece: str) -> bool:
    return piece[-6:].lower().endswith(("=", "\\u003d", "%3d"))


def _classify_macaroon(label: str, payload: str) -> _Classified:
    try:
        data = unb64(payload)  # as Go's StdEncoding
        if data:
            return _Classified("token", label + payload, Macaroon.decode(data), data)
    except (binascii.Error, ValueError):  # DecodeError is a ValueError
        pass
    return _Classified("malformed" if _suspicious(payload) else None, label + payload)


def _extract_macaroon(buf: str, label: str, start: int) -> tuple[_Classified, int, int]:
    """Classify the macaroon candidate whose payload starts at *start*.

    Returns the classification, the end of the candidate's text, and the end
    of the last run matched (the caller needs ``_MARGIN`` characters after
    it to be sure that more text would not change the answer).
    """
    m = _MAC_RUN_RE.match(buf, start)
    assert m is not None  # the pattern matches the empty string
    end = furthest = m.end()
    pieces = [m.group()]
    best, best_end = _classify_macaroon(label, _unescape(pieces[0])), end
    # Join adjacent string literals while the text so far is not a token.
    while best.kind != "token" and pieces[-1] and not _ends_padded(pieces[-1]):
        j = _JOIN_RE.match(buf, end)
        if j is None:
            break
        nxt = _MAC_RUN_RE.match(buf, j.end())
        assert nxt is not None
        furthest = nxt.end()
        if not nxt.group():
            break
        pieces.append(nxt.group())
        end = nxt.end()
        joined = _classify_macaroon(label, _unescape("".join(pieces)))
        if joined.kind is not None:
            best, best_end = joined, end
    return best, best_end, furthest


def _extract_oauth(buf: str, start: int) -> tuple[_Classified, int, int]:
    m = _OAUTH_RUN_RE.match(buf, start)
    assert m is not None
    payload = m.group()
    kind: Kind | None = None
    if _suspicious(payload):
        kind = "opaque" if len(payload) == _OAUTH_LENGTH else "malformed"
    return _Classified(kind, _OAUTH_LABEL + payload), m.end(), m.end()


def _run_end(buf: str, label: str, start: int) -> int:
    run = _OAUTH_RUN_RE if label == _OAUTH_LABEL else _MAC_RUN_RE
    m = run.match(buf, start)
    assert m is not None
    return m.end()


def _token_id(c: _Classified) -> TokenId:
    fingerprint = _fingerprint(c.token)
    if c.macaroon is None:
        return TokenId(None, None, fingerprint)
    nonce = c.macaroon.nonce
    return TokenId((nonce.kid or b"").hex(), (nonce.rnd or b"").hex(), fingerprint)


class _State:
    """What the scanner remembers from one buffer to the next (absolute offsets)."""

    __slots__ = ("counted", "group", "line", "line_start", "next_member", "skipping")

    def __init__(self) -> None:
        self.line = 1  # the line number at counted
        self.counted = 0  # newlines before this offset are counted in line
        self.line_start = 0  # offset of the first character of that line
        self.next_member = -1  # where a label continuing the current list would start
        self.group: Context = "bare"  # the context of the members of that list
        self.skipping: str | None = None  # the label of an oversized candidate being skipped

    def advance(self, buf: str, buf_abs: int, upto: int) -> None:
        """Count the lines of ``buf[..upto]`` not yet counted."""
        lo = self.counted - buf_abs
        if upto > lo:
            newlines = buf.count("\n", lo, upto)
            if newlines:
                self.line += newlines
                self.line_start = buf_abs + buf.rindex("\n", lo, upto) + 1
            self.counted = buf_abs + upto

    def context(self, buf: str, buf_abs: int, p: int, link: int) -> Context:
        """The context of the candidate at *p*; *link* is where a next member would start."""
        ctx: Context
        if buf_abs + p == self.next_member:
            ctx = self.group
        elif p and buf[p - 1] in " \t" and _SCHEME_RE.search(buf, max(0, p - _LOOKBEHIND), p):
            ctx = self.group = "header"
        elif link >= 0:
            ctx = self.group = "bundle"
        else:
            ctx = self.group = "bare"
        self.next_member = link
        return ctx


def _scan(
    chunks: Iterable[str], path: str | None, max_candidate: int = MAX_CANDIDATE_CHARS
) -> Iterator[_Hit]:
    """Yield a hit for each reported candidate in the text made of *chunks*.

    Buffers are processed one at a time. A candidate is decided only if the
    last run it needed ended at least ``_MARGIN`` characters before the
    buffer's end, or the text has ended; otherwise the buffer's tail from
    the candidate's label on (and ``_LOOKBEHIND`` characters before it, for
    the scheme) is carried into the next buffer, so chunk boundaries never
    split a token. Lines are counted only up to reported candidates and
    buffer ends, each character once.
    """
    st = _State()
    carry, carry_abs, scan_from = "", 0, 0
    # While a candidate is undecided, new text is gathered until it is at
    # least as long as the candidate so far: re-scans then cost O(n) in all.
    pending: list[str] = []
    pending_len = need = 0
    it = iter(chunks)
    final = False
    label_search = _LABEL_RE.search
    next_member_match = _NEXT_MEMBER_RE.match
    while not final:
        chunk = next(it, None)
        if chunk is None:
            final = True
        elif not chunk:
            continue
        else:
            pending.append(chunk)
            pending_len += len(chunk)
            if pending_len < need:
                continue
        new = pending[0] if len(pending) == 1 else "".join(pending)
        pending.clear()
        pending_len = 0
        buf = carry + new if carry else new
        buf_abs = carry_abs
        size = len(buf)
        pos = scan_from
        keep_from = -1  # the label of an undecided candidate, if any

        if st.skipping is not None:
            pos = _run_end(buf, st.skipping, pos)
            if final or pos + _LONGEST_ESCAPE <= size:
                st.skipping = None
            else:
                pos = size

        while st.skipping is None:
            lm = label_search(buf, pos)
            if lm is None:
                break
            p, label = lm.start(), lm.group()
            if label == _OAUTH_LABEL:
                result, end, furthest = _extract_oauth(buf, lm.end())
            else:
                result, end, furthest = _extract_macaroon(buf, label, lm.end())
            decided = final or furthest + _MARGIN <= size
            oversized = (end if decided else size) - p > max_candidate
            if not decided and not oversized:
                keep_from = p
                break
            link = -1
            if not oversized:
                nm = next_member_match(buf, end)
                if nm is not None:
                    link = buf_abs + nm.end()
                elif result.kind is None:
                    # Not reported and not followed by another member: only
                    # the list it may end needs to forget it.
                    st.next_member = -1
                    pos = end
                    continue
            context = st.context(buf, buf_abs, p, link)
            if oversized:
                st.advance(buf, buf_abs, p)
                tid = TokenId(None, None, None)
                column = buf_abs + p - st.line_start + 1
                finding = Finding(path, st.line, column, label, context, "malformed", tid)
                yield _Hit(finding, None, None, None)
                pos = _run_end(buf, label, lm.end())
                if not (final or pos + _LONGEST_ESCAPE <= size):
                    st.skipping, pos = label, size
                continue
            if result.kind is not None:
                st.advance(buf, buf_abs, p)
                column = buf_abs + p - st.line_start + 1
                finding = Finding(
                    path,
                    st.line,
                    column,
                    label,
                    context,
                    result.kind,
                    _token_id(result),
                    result.macaroon.location if result.macaroon is not None else None,
                )
                yield _Hit(finding, result.token, result.macaroon, result.data)
            pos = end

        if final:
            return
        if keep_from < 0:
            keep_from = max(pos, size - _CARRY_LABEL) if st.skipping is None else size
            need = 0
        else:
            need = size - keep_from
        st.advance(buf, buf_abs, keep_from)
        start = max(0, keep_from - _LOOKBEHIND)
        carry, carry_abs, scan_from = buf[start:], buf_abs + start, keep_from - start


# -- scanning: the public API -------------------------------------------------


def find_tokens(text: str, path: str | None = None) -> Iterator[Finding]:
    """Yield a :class:`Finding` for every token-like string in *text*, in order.

    Args:
        text: the text to search.
        path: reported as :attr:`Finding.path` (the text's origin, if any).

    Findings of every kind are yielded; check :attr:`Finding.kind` (only
    ``"token"`` findings are structurally valid macaroons).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    for hit in _scan((text,), path):
        yield hit.finding


def extract_tokens(text: str, path: str | None = None) -> Iterator[tuple[Finding, str]]:
    """Yield ``(finding, token_string)`` for every real token in *text*.

    This is the one API that hands out the leaked token strings themselves
    (unescaped, e.g. ``fm2_...``), for revoking them: handle them as the
    secrets they are. Only ``"token"`` and ``"opaque"`` findings are
    yielded; malformed candidates are not tokens.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    for hit in _scan((text,), path):
        if hit.finding.kind != "malformed" and hit.token is not None:
            yield hit.finding, hit.token


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


_PathArg = str | os.PathLike[str]


def scan_paths(
    paths: _PathArg | Iterable[_PathArg],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_error: Callable[[OSError], None] | None = None,
    follow_symlinks: bool = False,
) -> Iterator[Finding]:
    """Yield the findings of files and of every file under directories.

    Directories are walked in sorted order; directories named ``.git`` are
    not entered. Only regular files are read, and a file whose first 8 KiB
    hold a NUL byte is taken as binary and skipped. Files are read
    *chunk_size* bytes at a time and decoded as UTF-8 (a BOM is dropped,
    undecodable bytes kept as one character each), so memory stays bounded
    whatever a file's size; a token straddling two chunks is found as if
    the file were read whole.

    Symbolic links met inside a directory are skipped, so a scan never
    reads, or reports on, anything outside the trees it was given. A path
    given in *paths* is scanned even if it is itself a link: the caller
    named it.

    Args:
        paths: a path or several.
        chunk_size: bytes read at a time.
        on_error: called with each :class:`OSError` (unreadable file or
            directory); by default the error is raised.
        follow_symlinks: follow links met inside directories, but only to
            targets inside one of *paths* (after resolving every link);
            findings then name the resolved path, and each file and
            directory is visited once, so link loops end.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    handle = on_error or _raise
    for file_path, walked in _walk(paths, handle, follow_symlinks):
        yield from _scan_file(file_path, chunk_size, handle, nofollow=walked)


def _raise(err: OSError) -> None:
    raise err


class _Walk:
    """One walk's settings and the files and directories it has visited."""

    def __init__(self, handle: Callable[[OSError], None], roots: list[str], follow: bool) -> None:
        self.handle = handle
        self.follow = follow
        self.inside = [os.path.realpath(r) for r in roots] if follow else []
        self.seen: set[tuple[int, int]] = set()

    def first_visit(self, st: os.stat_result) -> bool:
        """Whether this file or directory is new (always, when links are not followed)."""
        if not self.follow:
            return True
        ident = (st.st_dev, st.st_ino)
        if ident in self.seen:
            return False
        self.seen.add(ident)
        return True

    def contains(self, real: str) -> bool:
        for root in self.inside:
            try:
                if os.path.commonpath([real, root]) == root:
                    return True
            except ValueError:  # another drive
                continue
        return False

    def entry(self, e: os.DirEntry[str]) -> tuple[str, bool] | None:
        """``(path, is_dir)`` to visit for *e*, or ``None`` to skip it."""
        if not self.follow:
            if e.is_symlink():
                return None
            if e.is_dir(follow_symlinks=False):
                return e.path, True
            return (e.path, False) if e.is_file(follow_symlinks=False) else None
        path = e.path
        if e.is_symlink():
            path = os.path.realpath(path)
            if not self.contains(path):
                return None
        st = os.stat(path)
        if not self.first_visit(st):
            return None
        if stat.S_ISDIR(st.st_mode):
            return path, True
        return (path, False) if stat.S_ISREG(st.st_mode) else None

    def tree(self, top: str, st: os.stat_result) -> Iterator[str]:
        """The regular files under *top*, depth first, each directory's files first."""
        self.first_visit(st)
        stack = [top]
        while stack:
            try:
                with os.scandir(stack.pop()) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as err:
                self.handle(err)
                continue
            subdirs = []
            for e in entries:
                try:
                    found = self.entry(e)
                except OSError as err:
                    self.handle(err)
                    continue
                if found is None:
                    continue
                path, is_dir = found
                if not is_dir:
                    yield path
                elif ".git" not in (e.name, os.path.basename(path)):
                    subdirs.append(path)
            stack.extend(reversed(subdirs))


def _walk(
    paths: _PathArg | Iterable[_PathArg], handle: Callable[[OSError], None], follow: bool
) -> Iterator[tuple[str, bool]]:
    """Yield ``(path, walked)``: each file to read, and whether a walk found it."""
    roots = []
    for root in [paths] if isinstance(paths, str | os.PathLike) else list(paths):
        root_s = os.fspath(root)
        if not isinstance(root_s, str):
            raise TypeError("paths must be str or os.PathLike[str]")
        roots.append(root_s)
    walk = _Walk(handle, roots, follow)
    for root_s in roots:
        try:
            st = os.stat(root_s)  # a root is followed: the caller named it
        except OSError as err:
            handle(err)
            continue
        if stat.S_ISDIR(st.st_mode):
            for path in walk.tree(root_s, st):
                yield path, True
        elif stat.S_ISREG(st.st_mode) and walk.first_visit(st):
            yield root_s, False


# Open flags for reading a file a walk found: a link swapped in since the
# walk saw a regular file is not followed, and a FIFO does not block.
_WALKED_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_ROOT_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)


def _scan_file(
    path: str, chunk_size: int, handle: Callable[[OSError], None], *, nofollow: bool
) -> Iterator[Finding]:
    try:
        fd = os.open(path, _WALKED_FLAGS if nofollow else _ROOT_FLAGS)
    except OSError as err:
        handle(err)
        return
    f = os.fdopen(fd, "rb")
    try:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return  # replaced since the walk saw it
            first = f.read(chunk_size)
        except OSError as err:
            handle(err)
            return
        if b"\x00" in first[:_BINARY_SNIFF]:
            return
        for hit in _scan(_decoded_chunks(f, first, chunk_size, handle), path):
            yield hit.finding
    finally:
        f.close()


def _decoded_chunks(
    f: Any, first: bytes, chunk_size: int, handle: Callable[[OSError], None]
) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")("surrogateescape")
    data = first
    while data:
        yield decoder.decode(data)
        try:
            data = f.read(chunk_size)
        except OSError as err:
            handle(err)
            return
    yield decoder.decode(b"", final=True)


# -- GitHub secret-scanning alerts --------------------------------------------


class AlertVerificationError(VerificationError):
    """A GitHub secret-scanning alert was refused.

    Its signature header or key identifier header is missing or repeated,
    the signature is not base64 or does not verify over the raw body, the
    key identifier is not among the public keys supplied, the public-keys
    document is malformed, or the signed body is not a JSON array of
    matches. The message never contains a reported token.
    """


def _read_only(
    keys: Mapping[str, ec.EllipticCurvePublicKey],
) -> Mapping[str, ec.EllipticCurvePublicKey]:
    return types.MappingProxyType(dict(keys))


def _frozen(ids: Iterable[str]) -> frozenset[str]:
    return frozenset(ids)


@attrs.frozen(eq=False)
class GitHubPublicKeys:
    """GitHub's secret-scanning public keys, by key identifier.

    Build it with :meth:`from_json` from the document GitHub publishes at
    ``https://api.github.com/meta/public_keys/secret_scanning``, which the
    caller fetches (and caches) as it sees fit; this library does no I/O.
    A key verifies alerts whether or not it is marked ``is_current``, so
    alerts signed just before a rotation still verify.

    Attributes:
        keys: the P-256 public keys, by ``key_identifier``.
        current: the identifiers marked ``is_current``.
    """

    keys: Mapping[str, ec.EllipticCurvePublicKey] = attrs.field(
        converter=_read_only, repr=lambda k: repr(sorted(k))
    )
    current: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen)

    @classmethod
    def from_json(cls, document: str | bytes | Mapping[str, Any]) -> GitHubPublicKeys:
        """Parse ``{"public_keys": [{"key_identifier", "key", "is_current"}, ...]}``.

        *document* is the JSON text or its parsed value. Every key must be a
        PEM ``PUBLIC KEY`` on the P-256 curve.

        Raises:
            AlertVerificationError: the document is malformed.
        """
        try:
            doc = (
                load_json(document, "public keys document")
                if isinstance(document, str | bytes)
                else document
            )
        except DecodeError as exc:  # not JSON, or nested too deeply
            raise AlertVerificationError(str(exc)) from None
        entries = doc.get("public_keys") if isinstance(doc, Mapping) else None
        if not isinstance(entries, list):
            raise AlertVerificationError("public keys document has no public_keys list")
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        current = set()
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise AlertVerificationError("public keys document: entry is not an object")
            ident, pem = entry.get("key_identifier"), entry.get("key")
            if not isinstance(ident, str) or not ident or not isinstance(pem, str):
                raise AlertVerificationError("public keys document: bad key_identifier or key")
            try:
                key = serialization.load_pem_public_key(pem.encode("ascii"))
            except (ValueError, UnicodeError, TypeError):
                raise AlertVerificationError(f"public key {ident!r} is not a PEM key") from None
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
                key.curve, ec.SECP256R1
            ):
                raise AlertVerificationError(f"public key {ident!r} is not an ECDSA P-256 key")
            keys[ident] = key
            if entry.get("is_current") is True:
                current.add(ident)
        return cls(keys, current)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Check the signature GitHub put on *body*; return only if it is genuine.

        Args:
            body: the request's raw body bytes, exactly as received.
            headers: the request's headers (names in any case).

        Raises:
            AlertVerificationError: see the class.
        """
        if not isinstance(body, bytes):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        ident = _one_header(headers, GITHUB_KEY_IDENTIFIER_HEADER)
        signature = _one_header(headers, GITHUB_SIGNATURE_HEADER)
        key = self.keys.get(ident)
        if key is None:
            raise AlertVerificationError("unknown GitHub public key identifier")
        try:
            der = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise AlertVerificationError("signature is not base64") from None
        try:
            key.verify(der, body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            raise AlertVerificationError("bad alert signature") from None


def _one_header(headers: Mapping[str, str], name: str) -> str:
    want = name.lower()
    values = [v for k, v in headers.items() if isinstance(k, str) and k.lower() == want]
    if len(values) != 1 or not isinstance(values[0], str) or not values[0].strip():
        what = "missing" if not values else "malformed"
        raise AlertVerificationError(f"{what} {name} header")
    return values[0].strip()


@attrs.frozen
class GitHubTokenMatch:
    """One match GitHub reported: a string its pattern found, and where.

    Attributes:
        token: the matched string; a secret, so never in ``repr``.
        token_type: the secret type name (``type`` in the payload).
        url: the public URL where it was found (may be empty).
        source: where on GitHub it was found (``commit``, ``content``, ...).
    """

    token: str = attrs.field(repr=False)
    token_type: str
    url: str = ""
    source: str = ""

    @property
    def token_hash(self) -> str:
        """SHA-256 hex of the reported string: the ``token_hash`` of feedback."""
        return _sha256_hex(self.token)


@attrs.frozen
class GitHubFeedback:
    """Feedback on one match, in the hashed form GitHub accepts.

    Attributes:
        token_hash: SHA-256 hex of the reported string.
        token_type: the match's secret type.
        label: ``"true_positive"`` or ``"false_positive"``.
    """

    token_hash: str
    token_type: str
    label: Literal["true_positive", "false_positive"]

    def to_dict(self) -> dict[str, str]:
        """``{"token_hash": ..., "token_type": ..., "label": ...}``."""
        return {"token_hash": self.token_hash, "token_type": self.token_type, "label": self.label}

    @staticmethod
    def to_json(feedback: Iterable[GitHubFeedback]) -> str:
        """The JSON array of *feedback*, the body to send back to GitHub."""
        return json.dumps([f.to_dict() for f in feedback], separators=(",", ":"))


def verify_github_alert(
    body: bytes,
    headers: Mapping[str, str],
    public_keys: GitHubPublicKeys | str | bytes | Mapping[str, Any],
) -> list[GitHubTokenMatch]:
    """Verify a secret-scanning alert's signature, then parse its matches.

    GitHub signs the raw body with ECDSA P-256 and SHA-256 and sends the
    base64 DER signature in ``Github-Public-Key-Signature`` and the signing
    key's identifier in ``Github-Public-Key-Identifier``. Nothing in the
    body is looked at before the signature is checked.

    Args:
        body: the raw request body.
        headers: the request headers (names in any case).
        public_keys: :class:`GitHubPublicKeys`, or the public-keys document
            (JSON text or parsed) for :meth:`GitHubPublicKeys.from_json`.

    Returns:
        The matches, in order: ``[{"token", "type", "url", "source"}, ...]``.

    Raises:
        AlertVerificationError: the alert is refused (bad, missing or
            unverifiable signature, unknown key, malformed body).
    """
    keys = (
        public_keys
        if isinstance(public_keys, GitHubPublicKeys)
        else (GitHubPublicKeys.from_json(public_keys))
    )
    keys.verify(body, headers)
    try:
        items = load_json(body, "alert body")
    except DecodeError as exc:  # not JSON, or nested too deeply
        raise AlertVerificationError(str(exc)) from None
    if not isinstance(items, list):
        raise AlertVerificationError("alert body is not a JSON array")
    matches = []
    for item in items:
        if not isinstance(item, dict):
            raise AlertVerificationError("alert match is not an object")
        token, token_type = item.get("token"), item.get("type")
        url, source = item.get("url", ""), item.get("source", "")
        if not (isinstance(token, str) and token and isinstance(token_type, str)):
            raise AlertVerificationError("alert match lacks a token or type")
        if not isinstance(url, str | None) or not isinstance(source, str | None):
            raise AlertVerificationError("alert match has a bad url or source")
        matches.append(GitHubTokenMatch(token, token_type, url or "", source or ""))
    return matches


def _signature_ok(m: Macaroon, key_for_kid: Callable[[bytes], bytes | None]) -> bool:
    """Whether *m*'s own HMAC chain checks out under the key for its KID.

    Only the token's signature is checked: not its discharges, third-party
    caveats or validity. A leaked token is real even when it is expired or
    useless without a discharge.
    """
    key = key_for_kid(m.nonce.kid or b"")
    if key is None:
        return False
    crypto.check_key(key, "key")
    try:
        tails = m._tails(key)
    except DecodeError:
        return False
    return m._signed_by(tails)


def classify_github_alert(
    matches: Iterable[GitHubTokenMatch],
    key_for_kid: Callable[[bytes], bytes | None],
    *,
    revoke: Callable[[TokenId, bytes], None] | None = None,
) -> list[GitHubFeedback]:
    """Label each match true or false positive; revoke the true ones.

    A match is a true positive if a macaroon in it (a token string, a
    header or a comma-separated bundle, found as :func:`find_tokens` finds
    them) parses and its own signature (its HMAC chain) verifies under
    ``key_for_kid(kid)``. Only the signature is checked, not discharges,
    third-party caveats or validity windows: an expired or undischarged
    token is still a real, leaked one. Everything else, ``fo1_`` tokens
    included (they cannot be checked here), is a false positive.

    A third party can classify its discharges too: their KID is the ticket,
    which its ``key_for_kid`` can open to the discharge's root key.

    Args:
        matches: the matches from :func:`verify_github_alert`.
        key_for_kid: the root key for a KID, or ``None`` if unknown (for
            example ``keyring.key_for``). Its exceptions propagate: a
            keyring outage must not turn into false-positive feedback.
        revoke: if given, called once per distinct verified token with its
            :class:`TokenId` and its decoded (MessagePack) bytes.

    Returns:
        One :class:`GitHubFeedback` per match, in order.
    """
    revoked: set[bytes] = set()
    feedback = []
    for match in matches:
        verified = False
        for hit in _scan((match.token,), None):
            if hit.macaroon is None or hit.data is None:
                continue
            if not _signature_ok(hit.macaroon, key_for_kid):
                continue
            verified = True
            if revoke is not None and hit.data not in revoked:
                revoked.add(hit.data)
                revoke(hit.finding.token_id, hit.data)
        label: Literal["true_positive", "false_positive"] = (
            "true_positive" if verified else "false_positive"
        )
        feedback.append(GitHubFeedback(match.token_hash, match.token_type, label))
    return feedback


def handle_github_alert(
    body: bytes,
    headers: Mapping[str, str],
    public_keys: GitHubPublicKeys | str | bytes | Mapping[str, Any],
    key_for_kid: Callable[[bytes], bytes | None],
    *,
    revoke: Callable[[TokenId, bytes], None] | None = None,
) -> list[GitHubFeedback]:
    """:func:`verify_github_alert`, then :func:`classify_github_alert`.

    Send ``GitHubFeedback.to_json(result)`` back as the response body (to
    partners that give feedback); answer an :class:`AlertVerificationError`
    with a client error.
    """
    matches = verify_github_alert(body, headers, public_keys)
    return classify_github_alert(matches, key_for_kid, revoke=revoke)
