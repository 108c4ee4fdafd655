"""JSON and base64 as Go's ``encoding/json`` and ``encoding/base64`` write and read them.

Tokens, caveats, accesses, tickets and alerts cross between this library
and Go programs as JSON and base64: these helpers write exactly what Go
writes and refuse what Go refuses (or what would make Python misbehave:
deep nesting, non-finite numbers), with a typed error.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from .errors import DecodeError

__all__ = ["MAX_JSON_DEPTH", "b64", "go_json", "go_text", "load_json", "unb64"]


def go_json(value: Any) -> str:
    r"""JSON text exactly as Go's ``encoding/json`` writes it.

    A string holding bytes that are not UTF-8 (kept as surrogates, see
    :func:`string`) is written as Go writes it: ``\ufffd`` for each bad
    byte. Such JSON is lossy: reading it back gives U+FFFD, not the bytes.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii():
        text = _SURROGATE.sub(r"\\ufffd", text)
    # Go escapes HTML-significant characters and the JS line separators.
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


#: How deeply a JSON document may nest arrays and objects. Caveat JSON at
#: the deepest nesting of ``IfPresent`` that decoding allows needs 53.
MAX_JSON_DEPTH = 128

_SURROGATE = re.compile("[\ud800-\udfff]")


def go_text(value: str) -> str:
    r"""A string read from JSON, as Go reads it: lone surrogates become U+FFFD.

    They come from ``\udc80``-style escapes, or from invalid UTF-8 bytes
    that :func:`load_json` kept one surrogate each; Go's decoder replaces
    both with U+FFFD, so they can never stand for raw bytes.
    """
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: Go refuses it too
        raise ValueError("number out of range")
    return value


def load_json(text: str | bytes, what: str) -> Any:
    """Parse JSON text as Go's decoder would, or raise :class:`DecodeError`.

    Bytes that are not UTF-8 are kept as one surrogate each (see
    :func:`go_text`). ``NaN``, ``Infinity`` and numbers beyond a float's
    range are refused, as Go refuses them, and so are documents nested
    more than ``MAX_JSON_DEPTH`` deep and integers of more than 4300
    digits (Python's limit).

    Raises:
        DecodeError: naming *what* was being read.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise DecodeError(f"{what} JSON is nested too deeply") from None
    except ValueError:
        raise DecodeError(f"{what} is not valid JSON") from None
    # Counting brackets is cheap and spares the walk for every small document.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise DecodeError(f"{what} JSON is nested more than {MAX_JSON_DEPTH} deep")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative, so the walk itself cannot overflow the stack.
    if type(value) is not list and type(value) is not dict:
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if type(c) is list or type(c) is dict)
    return False


def unb64(text: str) -> bytes:
    """Standard, padded base64, decoded as Go's ``base64.StdEncoding`` decodes it.

    Go's decoder skips line breaks (CR and LF) wherever they are, and
    nothing else. Strict mode checks the alphabet and the padding in C, but
    it still takes ``=`` beyond what fills the last quantum (``"QUJD="``),
    which Go refuses; so the text must also be exactly as long as the
    padded encoding.

    Raises:
        binascii.Error: not such base64 (``ValueError`` if not ASCII).
    """
    if "\n" in text or "\r" in text:
        text = text.replace("\r", "").replace("\n", "")
    data = binascii.a2b_base64(text, strict_mode=True)
    if len(text) != (len(data) + 2) // 3 * 4:
        raise binascii.Error("padding beyond the last quantum")
    return data


def b64(value: bytes | None) -> str | None:
    """Go's JSON form of a byte slice."""
    return None if value is None else base64.b64encode(value).decode("ascii")
