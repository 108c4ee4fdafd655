"""Finding tokens in text: :func:`find_tokens`, :func:`extract_tokens`, :class:`Finding`.

What counts as a token, which escapes and splits are undone, and how
contexts and positions are reported is described in :mod:`macaroons_authz.leaks`.
The file walker (:mod:`~macaroons_authz.leaks.files`), redaction
(:mod:`~macaroons_authz.leaks.redaction`) and the GitHub alert code
(:mod:`~macaroons_authz.leaks.github`) are built on :func:`_scan`.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal, NamedTuple

import attrs

from ..caveats._base import unb64
from ..macaroon import Macaroon
from ..nonce import Nonce

__all__ = [
    "MAX_CANDIDATE_CHARS",
    "Finding",
    "TokenId",
    "extract_tokens",
    "find_tokens",
]

#: What a :class:`Finding` is: see :attr:`Finding.kind`.
Kind = Literal["token", "opaque", "malformed"]
#: Where a :class:`Finding` stood: see :attr:`Finding.context`.
Context = Literal["header", "bundle", "bare"]

#: The longest candidate (label, payload and escapes, in characters) that is
#: examined. A valid token is at most :data:`~macaroons_authz.MAX_TOKEN_SIZE`
#: bytes, under 350,000 base64 characters, so with escapes and line
#: continuations a real one fits many times over; a longer run is reported
#: as ``"malformed"`` without a fingerprint and skipped.
MAX_CANDIDATE_CHARS: Final = 4 * 1024 * 1024

_OAUTH_LABEL = "fo1_"
_OAUTH_LENGTH = 43
_FINGERPRINT_HEX = 16
_MIN_SUSPICIOUS_LENGTH = 32
_MIN_DISTINCT = 12
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
_GLUED_LABEL_RE = re.compile(r"f(?:m(?:2|1[ra])|o1)\Z")  # a label's letters, before its "_"
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
    # Base64 has no "_": a run followed by one may end in the letters of the
    # next member's label, glued on without a comma ("...AAAfm2_BBB"). The
    # label belongs to the next candidate unless only the whole run is a
    # token (decoding ignores bytes after a token, so both may be).
    glued = _GLUED_LABEL_RE.search(buf, start, end) if buf.startswith("_", end) else None
    if glued is not None:
        cut = _classify_macaroon(label, _unescape(buf[start : glued.start()]))
        if cut.kind == "token" or best.kind != "token":
            end = glued.start()
            pieces = [buf[start:end]]
            best, best_end = cut, end
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
    payload, end = m.group(), m.end()
    if len(payload) > _OAUTH_LENGTH and _LABEL_RE.match(buf, start + _OAUTH_LENGTH):
        # Another member glued on without a comma ("fo1_...fm2_...").
        payload, end = payload[:_OAUTH_LENGTH], start + _OAUTH_LENGTH
    kind: Kind | None = None
    if _suspicious(payload):
        kind = "opaque" if len(payload) == _OAUTH_LENGTH else "malformed"
    return _Classified(kind, _OAUTH_LABEL + payload), end, m.end()


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
