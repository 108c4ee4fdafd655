"""How a token may be written: escapes, runs, joined pieces, base64-wrapped values.

The scanner (:mod:`~macaroons_authz.leaks.scanner`) finds labels and decides
what a candidate is; this module knows the spellings a payload takes in
text, each matched by one regular expression that runs in linear time
(possessive quantifiers: nothing is retried).
"""

from __future__ import annotations

import binascii
import re

from .. import _msgpack
from .._gojson import unb64

__all__: list[str] = []

LABEL_RE = re.compile(r"f(?:m(?:2|1[ra])|o1)_")
# The labels found from their "_": a cheap look back at the three characters
# before most "_" fail, then an exact one (so that no false match costs a
# Python step: "xm2_" repeated would).
_LABEL_END_RE = re.compile(r"_(?<=m2_|o1_|1r_|1a_)(?:(?<=fm2_|fo1_)|(?<=fm1[ra]_))")
_LABEL_OF_END = {"m2_": "fm2_", "o1_": "fo1_", "1r_": "fm1r_", "1a_": "fm1a_"}
_SAMPLE = 8192
# Base64 characters and the escapes of the documented subset, then at most
# two padding characters, which end a token.
_ESC = r"(?:\\/|\\u002[bBfF]|%2[bBfF]|&#(?:43|47|[xX]2[bBfF]);|\\\r?\n)"
# A run of base64 and escapes, loop unrolled (the common case stays in C's
# character-class loop); possessive, so nothing is ever retried.
_BODY = rf"[A-Za-z0-9+/]*+(?:{_ESC}[A-Za-z0-9+/]*+)*+"
_PAD = r"(?:=|\\u003[dD]|%3[dD]|&#(?:61|[xX]3[dD]);)"
_LABEL = r"f(?:m(?:2|1[ra])|o1)_"
MAC_RUN_RE = re.compile(rf"{_BODY}{_PAD}{{0,2}}+")
_WS = r"[ \t]{0,64}+(?:\r?\n[ \t]{0,64}+)?+"
_JOIN_RE = re.compile(rf"""(["']){_WS}(?:(?:[+.]|\\(?=\r?\n)){_WS})?+\1""")
# A chain of adjacent string literals quoted with q, each piece a run that does
# not start with a label, matched in one call (linear, in C) and ending after
# a padded piece. Pieces and what joins them hold no quote: str.split(q)
# takes the chain apart.
_NONEMPTY = r"(?=[A-Za-z0-9+/\\%&])"
_CHAIN_RE = {
    q: re.compile(
        rf"(?:{q}{_WS}(?:(?:[+.]|\\(?=\r?\n)){_WS})?+{q}(?!{_LABEL}){_NONEMPTY}{_BODY}(?!{_PAD}))*+"
        rf"(?:{q}{_WS}(?:(?:[+.]|\\(?=\r?\n)){_WS})?+{q}(?!{_LABEL}){_BODY}{_PAD}{{1,2}}+)?+"
    )
    for q in "\"'"
}
# A hard-wrapped line: Markdown or a YAML folded scalar (line break, then
# indentation), a Windows "^" or shell "\\" continuation (indentation after a
# continuation the run took in).
_WRAP = r"(?:[ \t]{0,8}+[\^\\]?+\r?\n[ \t]{0,64}+|(?<=\n)[ \t]{1,64}+)"
_WRAP_RE = re.compile(_WRAP)
_WRAP_CHAIN_RE = re.compile(
    rf"(?:{_WRAP}(?!{_LABEL}){_NONEMPTY}{_BODY}(?!{_PAD}))*+"
    rf"(?:{_WRAP}(?!{_LABEL}){_BODY}{_PAD}{{1,2}}+)?+"
)
_ESCAPE_RE = re.compile(
    r"\\/|\\u00(?:2[bBfF]|3[dD])|%(?:2[bBfF]|3[dD])|&#(?:43|47|61|[xX](?:2[bBfF]|3[dD]));|\\\r?\n"
)
_UNESCAPE = {
    "\\/": "/",
    "\\u002b": "+",
    "\\u002f": "/",
    "\\u003d": "=",
    "%2b": "+",
    "%2f": "/",
    "%3d": "=",
    "&#43;": "+",
    "&#47;": "/",
    "&#61;": "=",
    "&#x2b;": "+",
    "&#x2f;": "/",
    "&#x3d;": "=",
    "\\\n": "",
    "\\\r\n": "",
}


def unescape(raw: str) -> str:
    if "\\" not in raw and "%" not in raw and "&" not in raw:
        return raw
    return _ESCAPE_RE.sub(lambda m: _UNESCAPE[m.group().lower()], raw)


def ends_padded(piece: str) -> bool:
    # Each spelling of "=" ends in one of these: most runs are ruled out by one test.
    return piece[-1:] in ("=", "d", "D", ";") and piece[-6:].lower().endswith(
        ("=", "\\u003d", "%3d", "&#61;", "&#x3d;")
    )


def token_bytes(payload: str) -> int | None:
    """How many bytes the token at the start of base64 *payload* takes, if it is one.

    The MessagePack array of a token says where it ends, and a prefix of a
    base64 string decodes to a prefix of its bytes: so one decode of a whole
    joined run tells which join, if any, is the token.
    """
    try:
        data = binascii.a2b_base64(payload[: len(payload) // 4 * 4], strict_mode=True)
        # A token is an array of four fields.
        return _msgpack.value_end(data, 0) if data[:1] in (b"\x94", b"\xdc", b"\xdd") else None
    except (binascii.Error, ValueError):  # DecodeError is a ValueError
        return None


class Labels:
    """Finds the labels in one buffer, leftmost first.

    A regular expression's search steps into its matcher at each occurrence
    of the pattern's first character, and "f" is frequent (1.8% of Python
    source, 1.3% of JavaScript). Where "_" is rarer still (most code but
    Python's, logs, configuration), labels are searched for from their
    "_": about 1.6 times as fast on the benchmark corpus, and 12% slower
    on Python source, which keeps the search from "f". Either search finds
    the same labels.
    """

    __slots__ = ("buf", "from_end")

    def __init__(self, buf: str, from_end: bool) -> None:
        self.buf = buf
        self.from_end = from_end

    @staticmethod
    def choose(text: str) -> bool:
        """Whether to search *text* from the labels' "_", judged on its first 8 KiB.

        A text shorter than four samples is searched from "f": counting
        characters in all of it would cost more than the choice can save.
        """
        if len(text) < 4 * _SAMPLE:
            return False
        # An "_" costs the search about 1.25 times what an "f" does.
        return text.count("_", 0, _SAMPLE) * 5 < text.count("f", 0, _SAMPLE) * 4

    def next(self, pos: int) -> tuple[int, str] | None:
        """The start and the text of the first label at or after *pos*, if any."""
        buf = self.buf
        if not self.from_end:
            m = LABEL_RE.search(buf, pos)
            return None if m is None else (m.start(), m.group())
        at = pos + 3  # the "_" of a label at pos
        while (m := _LABEL_END_RE.search(buf, at)) is not None:
            at = m.end()
            label = _LABEL_OF_END[buf[at - 3 : at]]
            start = at - len(label)
            # Labels cannot overlap, so the first to end is the first to start.
            if start >= pos:
                return start, label
        return None


class Pieces:
    """A candidate's payload split where string literals or wrapped lines were joined.

    Attributes:
        raws: the pieces, escapes not undone; the first is the label's run.
        literal: how many pieces were joined as string literals (the rest
            as wrapped lines).
        end: where the last piece ends.
        whole: the pieces ended at or before *horizon*; if not, more text
            may add to them, and they were not split (``raws`` is only the
            first), which a candidate read again with more text would waste.
    """

    __slots__ = ("end", "lit_end", "literal", "parts", "raws", "start", "whole", "wrap_text")

    def __init__(self, buf: str, start: int, run_end: int, horizon: int) -> None:
        # Each chain is matched, and split into its pieces, by one call (in C).
        self.start = start
        self.raws = [buf[start:run_end]]
        self.parts = self.raws  # pieces and the joins between them
        self.lit_end = run_end
        self.literal, self.wrap_text, self.whole = 1, "", True
        j = _JOIN_RE.match(buf, run_end)
        if j is not None:
            chain = _CHAIN_RE[j.group(1)].match(buf, run_end)
            assert chain is not None  # the pattern matches the empty string
            self.lit_end = self.end = chain.end()
            if self.lit_end > horizon:
                self.whole = False
                return
            self.parts = buf[start : self.lit_end].split(j.group(1))  # piece, join, piece, ...
            self.raws = self.parts[0::2]
        self.literal, self.end = len(self.raws), self.lit_end
        if not ends_padded(buf[max(start, self.lit_end - 6) : self.lit_end]):
            wrapped = _WRAP_CHAIN_RE.match(buf, self.lit_end)
            assert wrapped is not None
            if wrapped.end() > self.lit_end:
                self.end = wrapped.end()
                if self.end > horizon:
                    self.whole = False
                    return
                # From the character before, which the look-behind needs; the
                # text before the first line break is not a piece.
                self.wrap_text = buf[self.lit_end - 1 : self.end]
                self.raws = self.raws + _WRAP_RE.split(self.wrap_text)[1:]

    def end_of(self, used: int) -> int:
        """Where the first *used* pieces end in the buffer."""
        if used >= len(self.raws):
            return self.end
        if used == self.literal:
            return self.lit_end
        if used > self.literal:
            nth = used - self.literal + 1  # the line break after the piece
            for i, m in enumerate(_WRAP_RE.finditer(self.wrap_text), 1):
                if i == nth:
                    return self.lit_end - 1 + m.start()
            return self.end
        # The pieces, the joins between them and the two quotes of each join.
        return self.start + sum(map(len, self.parts[: 2 * used - 1])) + 2 * (used - 1)


B64_VALUE_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
# The base64 of a label (fm2_, fo1_, fm1a_, fm1r_) or of "flyv1 " at the start
# of an encoded value; "FlyV1 " encodes as "Rmx5VjEg", before a label's.
_B64_LABELS = ("Zm0yX", "Zm8xX", "Zm0xYV", "Zm0xcl8", "Zmx5djEg")
_B64_LABEL_RE = re.compile("|".join(_B64_LABELS))
_B64_SCHEME = "Rmx5VjEg"
# Each encoding starts with "Z", rare in text (0.01-0.04% of source and
# documentation): str.find jumps from one "Z" to the next with memchr, many
# times faster than a regular expression's character-by-character search.
# Where "Z"s are denser than one in _SPARSE characters (a Python step per
# "Z" would cost more), the regular expression scans the rest instead.
_BATCH = 64
_SPARSE = 256


class Wrapped:
    """Finds base64 values that decode to a token or header, in one buffer.

    The next match is remembered until passed, so a buffer is searched once
    whatever the number of labels in it.
    """

    __slots__ = ("at", "buf", "dense", "start")

    def __init__(self, buf: str) -> None:
        self.buf = buf
        self.at = -2  # the next match; -2: not searched yet, -1: none
        self.start = -1  # where the value holding it starts
        self.dense = False  # "Z"s are dense: search with the regular expression

    def next(self, pos: int) -> int:
        """The start of the next such value at or after *pos*, or -1."""
        buf = self.buf
        while self.at == -2 or (self.at >= 0 and self.start < pos):
            self.at = at = self._find(max(pos, self.at + 1))
            if at < 0:
                break
            if at >= 8 and buf.startswith(_B64_SCHEME, at - 8):
                at -= 8
            # Only a value's start: a label's encoding inside a longer run is
            # at an offset that decodes to other text.
            self.start = at if at == 0 or buf[at - 1] not in _B64_CHARS else -1
        return self.start if self.at >= 0 else -1

    def _find(self, pos: int) -> int:
        """The next encoded label at or after *pos*, or -1."""
        buf = self.buf
        if not self.dense:
            find, last = buf.find, len(buf) - 1
            i = find("Z", pos)
            while i >= 0:
                batch_start = i
                for _ in range(_BATCH):
                    # One character compared first: startswith with a tuple
                    # costs twice as much as the rest of the loop.
                    if i < last and buf[i + 1] == "m" and buf.startswith(_B64_LABELS, i):
                        return i
                    i = find("Z", i + 1)
                    if i < 0:
                        return -1
                if i - batch_start < _BATCH * _SPARSE:
                    self.dense, pos = True, i
                    break
            else:
                return -1
        m = _B64_LABEL_RE.search(buf, pos)
        return m.start() if m is not None else -1


def unwrap(value: str) -> str | None:
    """The text a base64 value encodes, if it is UTF-8."""
    try:
        return unb64(value).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
