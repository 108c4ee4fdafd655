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
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal, NamedTuple

import attrs

from .._gojson import unb64
from ..macaroon import Macaroon
from ..nonce import Nonce
from .decoders import B64_VALUE_RE as _B64_VALUE_RE
from .decoders import LABEL_RE as _LABEL_RE
from .decoders import MAC_RUN_RE as _MAC_RUN_RE
from .decoders import Labels, Pieces, Wrapped, ends_padded, token_bytes
from .decoders import unescape as _unescape
from .decoders import unwrap as _unwrapped

__all__ = [
    "ALLOW_MARKER",
    "MAX_CANDIDATE_CHARS",
    "MAX_MALFORMED",
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
#: How many ``"malformed"`` findings one text yields. After them, or after
#: ten times as many candidates not worth reporting (a text packed with
#: labels), the text is flooded: candidates that cannot be tokens are passed
#: over in bulk, unreported, so that it scans fast. What can be a token
#: there is a label, then a payload of at least 44 base64 characters that
#: starts as a token's MessagePack array does (a token's tail alone takes
#: 46), or ``fo1_`` and at least 43 characters; these are examined as ever.
MAX_MALFORMED: Final = 1000
_MAX_UNREPORTED: Final = 10 * MAX_MALFORMED
# The first base64 character of a token: its array header is 0x94, 0xdc or 0xdd.
_TOKEN_STARTS: Final = ("l", "3")
#: Written on the line of a token, marks it as accepted (:attr:`Finding.allowed`).
ALLOW_MARKER: Final = "macaroons-authz: allow"

_OAUTH_LABEL = "fo1_"
_OAUTH_LENGTH = 43
_FINGERPRINT_HEX = 16
_MIN_SUSPICIOUS_LENGTH = 32
_MIN_DISTINCT = 12
_LOOKBEHIND = 96
_MARGIN = 512  # > the longest fixed-size look-ahead below (joins, bundle links)
# What a buffer's end may cut and the next buffer must see whole: a label
# (at most 4 characters before the cut), or the start of a base64-wrapped
# value, "Rmx5VjEg" ("FlyV1 ") and a label's encoding (at most 14).
_CARRY = 15
_LONGEST_ESCAPE = 8  # a run that stops this far from the buffer's end has ended

_OAUTH_RUN_RE = re.compile(r"[A-Za-z0-9_-]*")
_GLUED_LABEL_RE = re.compile(r"f(?:m(?:2|1[ra])|o1)\Z")  # a label's letters, before its "_"
# Text holding no candidate a flooded text examines (see MAX_MALFORMED): linear,
# one look-ahead of at most 48 characters at each "f".
_TOKEN_MIN_RUN = 44  # base64 characters: a token's 32-byte tail alone takes 46
_FLOOD_SKIP_RE = re.compile(
    rf"(?:[^f]++|f(?!m(?:2|1[ra])_[{''.join(_TOKEN_STARTS)}][A-Za-z0-9+/]{{{_TOKEN_MIN_RUN - 1}}}"
    rf"|o1_[A-Za-z0-9_-]{{{_OAUTH_LENGTH}}}))*+"
)
# The longest look-ahead ("f", "m1r_" and the run), and a label cut by the buffer's end.
_FLOOD_SIGHT: Final = 1 + len("m1r_") + _TOKEN_MIN_RUN + _CARRY
_NEXT_MEMBER_RE = re.compile(r",[ \t]{0,64}(?=f(?:m(?:2|1[ra])|o1)_)")
_SCHEMES = ("flyv1", "bearer")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def _after_scheme(buf: str, p: int) -> bool:
    """Whether ``FlyV1`` or ``Bearer``, in any case, then 1 to 64 spaces or tabs end at *p*.

    The scheme must not end a longer word. Read backwards with string
    methods: a regular expression's search tried each start in the window.
    """
    head = buf[max(0, p - _LOOKBEHIND) : p]
    word = head.rstrip(" \t")
    if not 1 <= len(head) - len(word) <= 64:
        return False
    for scheme in _SCHEMES:
        # Only ASCII letters are these letters in another case (str.lower
        # of another character is never one of them).
        if word[-len(scheme) :].lower() == scheme:
            # A window that starts at the scheme starts the text: 64 spaces
            # and the longest scheme are shorter than the window.
            return len(word) == len(scheme) or word[-len(scheme) - 1] not in _ALNUM
    return False


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
    # Random base64 almost always has 12 distinct characters in its first 24: the
    # set of the whole payload (microseconds for a long one) is rarely needed.
    return len(payload) >= _MIN_SUSPICIOUS_LENGTH and (
        len(set(payload[:24])) >= _MIN_DISTINCT or len(set(payload)) >= _MIN_DISTINCT
    )


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
        allowed: the line holds :data:`ALLOW_MARKER` (say, in a comment
            after a test fixture's token): the finding is reported, and the
            command line leaves it out.
    """

    path: str | None
    line: int
    column: int
    label: str
    context: Context
    kind: Kind
    token_id: TokenId
    location: str | None = None
    allowed: bool = False

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
            "allowed": self.allowed,
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


# Tokens lately found, with their ids: a token leaked in many places (each
# version of a file in a history, copies of one config) is decoded once.
# Bounded: at most _RECENT_ENTRIES tokens of at most _RECENT_CHARS characters
# (with their bytes and macaroons, a few MB at most); emptied when full.
_RECENT: dict[str, tuple[_Classified, TokenId]] = {}
_RECENT_ENTRIES: Final = 256
_RECENT_CHARS: Final = 4096


# What an undecided candidate is classified as: nothing, until more text comes.
_UNDECIDED: Final = _Classified(None, "")


def _classify_macaroon(label: str, payload: str) -> _Classified:
    # Only an array can be a token: anything else (most random base64) is
    # not decoded, which costs several microseconds when it fails.
    if payload.startswith(_TOKEN_STARTS):
        token = label + payload
        recent = _RECENT.get(token)
        if recent is not None:
            return recent[0]
        try:
            data = unb64(payload)  # as Go's StdEncoding
            found = _Classified("token", token, Macaroon.decode(data), data)
        except (binascii.Error, ValueError):  # DecodeError is a ValueError
            pass
        else:
            if len(token) <= _RECENT_CHARS:
                if len(_RECENT) >= _RECENT_ENTRIES:
                    _RECENT.clear()
                _RECENT[token] = (found, _token_id(found))
            return found
    return _Classified("malformed" if _suspicious(payload) else None, label + payload)


def _classify_joined(label: str, raws: list[str], literal: int) -> tuple[_Classified, int]:
    """Classify a candidate split into *raws* (escaped pieces); return how many it used.

    The first *literal* pieces were joined as string literals; the rest as
    wrapped lines, which are joined only if the join is a token. The result
    is the shortest join that is a token, else the join of the literals:
    each text is unescaped and decoded once, linear in the candidate.
    """
    first = _classify_macaroon(label, _unescape(raws[0])) if literal == 1 else None
    if first is not None and first.kind == "token":
        # A whole token ending its line, the next line indented: any join
        # that is a token is this one (decoding reads the same bytes).
        return first, 1
    size = token_bytes(_unescape("".join(raws)))
    if size is not None:
        want, total = (size + 2) // 3 * 4, 0
        for used, raw in enumerate(raws, 1):
            total += len(_unescape(raw))
            if total >= want:
                if total == want:
                    joined = _classify_macaroon(label, _unescape("".join(raws[:used])))
                    if joined.kind == "token":
                        return joined, used
                break
    best = first or _classify_macaroon(label, _unescape("".join(raws[:literal])))
    if best.kind is None:
        # Too short or too plain to report when joined: so is the first piece.
        return _Classified(None, label + _unescape(raws[0])), 1
    return best, literal


def _extract_macaroon(
    buf: str, label: str, start: int, horizon: int
) -> tuple[_Classified, int, int]:
    """Classify the macaroon candidate whose payload starts at *start*.

    Returns the classification, the end of the candidate's text, and the end
    of the last run matched (the caller needs ``_MARGIN`` characters after
    it to be sure that more text would not change the answer). A run that
    goes past *horizon* is not classified: the caller reads the candidate
    again with more text, or skips it as oversized.
    """
    m = _MAC_RUN_RE.match(buf, start)
    assert m is not None  # the pattern matches the empty string
    end = m.end()
    if end > horizon:
        return _UNDECIDED, end, end
    run = m.group()
    # Base64 has no "_": a run followed by one may end in the letters of the
    # next member's label, glued on without a comma ("...AAAfm2_BBB"). The
    # label belongs to the next candidate unless only the whole run is a
    # token (decoding ignores bytes after a token, so both may be).
    glued = _GLUED_LABEL_RE.search(buf, start, end) if buf.startswith("_", end) else None
    if glued is not None:
        whole = _classify_macaroon(label, _unescape(run))
        cut = _classify_macaroon(label, _unescape(buf[start : glued.start()]))
        if cut.kind == "token" or whole.kind != "token":
            return cut, glued.start(), end
        return whole, end, end
    if not run or ends_padded(run):
        return _classify_macaroon(label, _unescape(run)), end, end
    pieces = Pieces(buf, start, end, horizon)  # adjacent string literals, then wrapped lines
    if not pieces.whole:
        return _UNDECIDED, pieces.end, pieces.end
    if len(pieces.raws) == 1:
        return _classify_macaroon(label, _unescape(run)), end, end
    best, used = _classify_joined(label, pieces.raws, pieces.literal)
    return best, pieces.end_of(used), pieces.end


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


def _allows(buf: str, line_start: int, p: int, end: int) -> bool:
    """Whether :data:`ALLOW_MARKER` is on the line of the candidate ``buf[p:end]``.

    Looked for within ``_MARGIN`` characters of the candidate, so a long
    line costs no more than a short one.
    """
    lo = max(line_start, p - _MARGIN, 0)
    nl = buf.find("\n", end, end + _MARGIN)
    return buf.find(ALLOW_MARKER, lo, nl if nl >= 0 else end + _MARGIN) >= 0


def _token_id(c: _Classified) -> TokenId:
    recent = _RECENT.get(c.token)
    if recent is not None:
        return recent[1]
    fingerprint = _fingerprint(c.token)
    if c.macaroon is None:
        return TokenId(None, None, fingerprint)
    nonce = c.macaroon.nonce
    return TokenId((nonce.kid or b"").hex(), (nonce.rnd or b"").hex(), fingerprint)


class _State:
    """What the scanner remembers from one buffer to the next (absolute offsets)."""

    __slots__ = (
        "counted",
        "from_end",
        "group",
        "line",
        "line_start",
        "malformed",
        "next_member",
        "skipping",
        "unreported",
    )

    def __init__(self) -> None:
        self.line = 1  # the line number at counted
        self.counted = 0  # newlines before this offset are counted in line
        self.line_start = 0  # offset of the first character of that line
        self.next_member = -1  # where a label continuing the current list would start
        self.group: Context = "bare"  # the context of the members of that list
        self.skipping: str | None = None  # the label of an oversized candidate being skipped
        self.malformed = 0  # malformed findings reported
        self.unreported = 0  # candidates not worth reporting
        self.from_end: bool | None = None  # search labels from their "_" (None: not chosen)

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
        elif p and buf[p - 1] in " \t" and _after_scheme(buf, p):
            ctx = self.group = "header"
        elif link >= 0:
            ctx = self.group = "bundle"
        else:
            ctx = self.group = "bare"
        self.next_member = link
        return ctx


def _scan(
    chunks: Iterable[str],
    path: str | None,
    max_candidate: int = MAX_CANDIDATE_CHARS,
    *,
    unwrap: bool = True,
) -> Iterator[_Hit]:
    """Yield a hit for each reported candidate in the text made of *chunks*.

    Buffers are processed one at a time. A candidate is decided only if the
    last run it needed ended at least ``_MARGIN`` characters before the
    buffer's end, or the text has ended; otherwise the buffer's tail from
    the candidate's label on (and ``_LOOKBEHIND`` characters before it, for
    the scheme) is carried into the next buffer, so chunk boundaries never
    split a token. Lines are counted only up to reported candidates and
    buffer ends, each character once.

    With *unwrap*, a base64 value that starts with the encoding of a label
    or of ``FlyV1`` is decoded and its text scanned (one level deep); its
    findings point at the value.
    """
    st = _State()
    carry, carry_abs, scan_from = "", 0, 0
    # While a candidate is undecided, new text is gathered until it is at
    # least as long as the candidate so far: re-scans then cost O(n) in all.
    pending: list[str] = []
    pending_len = need = 0
    it = iter(chunks)
    # One chunk ahead, so the last is known as such (a text given whole is
    # scanned in one pass).
    ahead = next(it, None)
    final = False
    next_member_match = _NEXT_MEMBER_RE.match
    label_match = _LABEL_RE.match
    while not final:
        chunk, ahead = ahead, (next(it, None) if ahead is not None else None)
        final = ahead is None
        if chunk:
            pending.append(chunk)
            pending_len += len(chunk)
        if not final and pending_len < max(need, 1):
            continue
        new = pending[0] if len(pending) == 1 else "".join(pending)
        pending.clear()
        pending_len = 0
        buf = carry + new if carry else new
        buf_abs = carry_abs
        size = len(buf)
        # A candidate whose runs pass this may grow with the next chunk.
        horizon = sys.maxsize if final else size - _MARGIN
        pos = scan_from
        keep_from = -1  # the label of an undecided candidate, if any

        if st.skipping is not None:
            pos = _run_end(buf, st.skipping, pos)
            if final or pos + _LONGEST_ESCAPE <= size:
                st.skipping = None
            else:
                pos = size

        wrapped = Wrapped(buf) if unwrap else None
        w = -2  # the next wrapped value at or after pos; -1: none, -2: not searched yet
        if st.from_end is None:  # chosen once per text: a chunk's sample costs a pass
            st.from_end = Labels.choose(buf)
        labels = Labels(buf, st.from_end)
        p, label = -1, ""  # the first label at or after `searched` (p = -1: none)
        searched = -1
        while st.skipping is None:
            if searched < 0 or 0 <= p < pos:
                p, label = labels.next(pos) or (-1, "")
                searched = pos
            if wrapped is not None and (w == -2 or 0 <= w < pos):
                w = wrapped.next(pos)
            if w >= 0 and (p < 0 or w < p):
                vm = _B64_VALUE_RE.match(buf, w)
                assert vm is not None
                if not final and vm.end() + _MARGIN > size and size - w <= max_candidate:
                    keep_from = w
                    break
                text = _unwrapped(vm.group()) if vm.end() - w <= max_candidate else None
                if text is not None:
                    st.advance(buf, buf_abs, w)
                    line, column = st.line, buf_abs + w - st.line_start + 1
                    allowed = _allows(buf, st.line_start - buf_abs, w, vm.end())
                    for hit in _scan((text,), path, max_candidate, unwrap=False):
                        f = hit.finding
                        found = Finding(
                            path,
                            line,
                            column,
                            f.label,
                            f.context,
                            f.kind,
                            f.token_id,
                            f.location,
                            allowed or f.allowed,
                        )
                        yield hit._replace(finding=found)
                pos = vm.end()
                continue
            if p < 0:
                break
            if st.malformed >= MAX_MALFORMED or st.unreported >= _MAX_UNREPORTED:
                # A flooded text: what cannot be a token is passed over in one
                # match, up to the next wrapped value and, if more text is to
                # come, short of what the match could not see whole (its
                # look-ahead, and a label cut by the buffer's end). It is matched
                # no further than the wrapped value needs, so that a text of
                # many of them is read once.
                m = _FLOOD_SKIP_RE.match(buf, p, w + _FLOOD_SIGHT if w > p else size)
                assert m is not None  # the pattern matches the empty string
                skipped = m.end() if final else min(m.end(), size - _FLOOD_SIGHT)
                if w > p:
                    skipped = min(skipped, w)
                if skipped > p:
                    st.next_member = -1
                    pos = skipped
                    continue
            label_end = p + len(label)
            if label == _OAUTH_LABEL:
                result, end, furthest = _extract_oauth(buf, label_end)
            else:
                # Runs past p + max_candidate make it oversized: not worth classifying.
                limit = min(horizon, p + max_candidate)
                result, end, furthest = _extract_macaroon(buf, label, label_end, limit)
            decided = furthest <= horizon
            oversized = (end if decided else size) - p > max_candidate
            if not decided and not oversized:
                keep_from = p
                break
            kind = result.kind
            if kind == "malformed" and st.malformed >= MAX_MALFORMED:
                kind = None  # past the cap, as if not worth reporting
            link = -1
            if not oversized:
                nm = next_member_match(buf, end)
                if nm is not None:
                    link = buf_abs + nm.end()
                elif label_match(buf, end):  # glued on without a comma
                    link = buf_abs + end
                elif kind is None:
                    # Not reported and not followed by another member: only
                    # the list it may end needs to forget it.
                    st.next_member = -1
                    st.unreported += 1
                    pos = end
                    continue
            context = st.context(buf, buf_abs, p, link)
            if oversized:
                st.advance(buf, buf_abs, p)
                tid = TokenId(None, None, None)
                column = buf_abs + p - st.line_start + 1
                allowed = _allows(buf, st.line_start - buf_abs, p, p)
                finding = Finding(
                    path, st.line, column, label, context, "malformed", tid, None, allowed
                )
                yield _Hit(finding, None, None, None)
                pos = _run_end(buf, label, label_end)
                if not (final or pos + _LONGEST_ESCAPE <= size):
                    st.skipping, pos = label, size
                continue
            if kind is not None:
                st.advance(buf, buf_abs, p)
                column = buf_abs + p - st.line_start + 1
                finding = Finding(
                    path,
                    st.line,
                    column,
                    label,
                    context,
                    kind,
                    _token_id(result),
                    result.macaroon.location if result.macaroon is not None else None,
                    _allows(buf, st.line_start - buf_abs, p, end),
                )
                st.malformed += kind == "malformed"
                yield _Hit(finding, result.token, result.macaroon, result.data)
            else:
                st.unreported += 1
            pos = end

        if final:
            return
        if keep_from < 0:
            keep_from = max(pos, size - _CARRY) if st.skipping is None else size
            need = 0
        else:
            need = size - keep_from
        st.advance(buf, buf_abs, keep_from)
        # Kept before the next candidate: the scheme's look-behind and the
        # allow marker's (_MARGIN, the longer).
        start = max(0, keep_from - _MARGIN)
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
