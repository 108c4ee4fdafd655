"""The canonical MessagePack profile (spec section 2).

Go's encoder writes structs as arrays, integers in their smallest form
(non-negative values always in the unsigned forms), strings as ``str`` (with
``str8`` for 32-255 bytes), byte slices as ``bin`` and nil as ``c0``.
``msgpack.packb(..., use_bin_type=True)`` writes exactly those bytes for
ints, ``str``, ``bytes``, ``bool``, ``None`` and lists, so encoding is a thin
wrapper. Strings that are not valid UTF-8 survive a round trip through
``surrogateescape``, as Go strings may hold any bytes.

Decoding takes the first complete value and ignores what follows it, as Go
does. Every length is checked against the input's size, and every array
and map count against :data:`MAX_CONTAINER_LENGTH`, from its header before
anything is built: a token refused for a count has cost no more memory than
its own size (an array of 255,000 empty maps would otherwise cost 70 times
it). :func:`value_end` walks raw bytes
without building values; it finds the exact wire bytes of caveats this
library does not know, which must be re-emitted unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgpack

from .errors import DecodeError

#: How deeply :func:`value_end` follows nested arrays and maps.
MAX_DEPTH = 64
#: The most elements an array, or pairs a map, may hold: a caveat set of
#: ``MAX_CAVEATS`` (4096) caveats is an array of twice that. Go has no such
#: limit; no token it makes comes near it.
MAX_CONTAINER_LENGTH = 8192

_UNICODE_ERRORS = "surrogateescape"


_local = threading.local()


def _packer() -> Any:
    # msgpack.packb builds a Packer per call, which costs more than packing
    # a caveat; one Packer per thread is reused instead.
    packer = msgpack.Packer(use_bin_type=True, unicode_errors=_UNICODE_ERRORS, autoreset=True)
    _local.pack = packer.pack
    return packer.pack


def pack(obj: Any) -> bytes:
    """Encode *obj* in the canonical profile."""
    packer = getattr(_local, "pack", None) or _packer()
    packed: bytes = packer(obj)
    return packed


def packer() -> Callable[[Any], bytes]:
    """The calling thread's :func:`pack`, without the look-up per call (for loops)."""
    found: Callable[[Any], bytes] = getattr(_local, "pack", None) or _packer()
    return found


def unpack(data: bytes) -> Any:
    """Decode the first complete value of *data*; trailing bytes are ignored."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            unicode_errors=_UNICODE_ERRORS,
            max_array_len=MAX_CONTAINER_LENGTH,
            max_map_len=MAX_CONTAINER_LENGTH,
        )
    except msgpack.ExtraData as extra:
        return extra.unpacked
    except ValueError as exc:
        if "exceeds max_" in str(exc):  # read from a header, before anything was built
            limit = MAX_CONTAINER_LENGTH
            msg = f"malformed MessagePack: more than {limit} elements in a container"
            raise DecodeError(msg) from None
        if "incomplete input" in str(exc):  # the data ends inside a value
            raise DecodeError("malformed MessagePack: truncated") from None
        raise DecodeError(f"malformed MessagePack: {type(exc).__name__}") from None
    except (TypeError, msgpack.UnpackException) as exc:
        # TypeError: an unhashable map key; ValueError covers incomplete
        # input, bad format bytes, nesting too deep and lengths over limit.
        raise DecodeError(f"malformed MessagePack: {type(exc).__name__}") from None


def first_in_array(data: bytes) -> Any:
    """The first element of the array *data* begins with, reading nothing after it.

    As Go's ``DecodeNonce``: the array must hold at least one element; what
    follows the first is neither read nor checked.

    Raises:
        DecodeError: *data* does not begin with such an array.
    """
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        unicode_errors=_UNICODE_ERRORS,
        max_array_len=MAX_CONTAINER_LENGTH,
        max_map_len=MAX_CONTAINER_LENGTH,
    )
    unpacker.feed(data)
    try:
        if unpacker.read_array_header() == 0:
            raise DecodeError("malformed MessagePack: empty array")
        return unpacker.unpack()
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # OutOfData (truncated) is an UnpackException; the rest as in unpack().
        raise DecodeError(f"malformed MessagePack: {type(exc).__name__}") from None


def array_header(n: int) -> bytes:
    """The header of an array of *n* elements."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


# Lengths of the fixed-size formats, by first byte.
_FIXED = {
    0xC0: 0, 0xC2: 0, 0xC3: 0,
    0xCA: 4, 0xCB: 8,
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
    0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17,
}  # fmt: skip
# Formats whose payload length follows the first byte, by first byte:
# (size of the length field, extra bytes after it such as an ext type).
_SIZED = {
    0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0),
    0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),
}  # fmt: skip


def _read_uint(data: bytes, pos: int, size: int) -> int:
    if pos + size > len(data):
        raise DecodeError("malformed MessagePack: truncated")
    return int.from_bytes(data[pos : pos + size], "big")


def value_end(data: bytes, pos: int, depth: int = 0) -> int:
    """Return the offset just past the value that starts at *pos*."""
    if depth > MAX_DEPTH:
        raise DecodeError("malformed MessagePack: nested too deeply")
    if pos >= len(data):
        raise DecodeError("malformed MessagePack: truncated")
    b = data[pos]
    pos += 1
    if b <= 0x7F or b >= 0xE0:
        return pos
    if 0xA0 <= b <= 0xBF:
        end = pos + (b & 0x1F)
    elif b in _FIXED:
        end = pos + _FIXED[b]
    elif b in _SIZED:
        size, extra = _SIZED[b]
        end = pos + size + extra + _read_uint(data, pos, size)
    elif 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        count, pos = _container_count(data, b, pos, 0x90, 0xDC)
        for _ in range(count):
            pos = value_end(data, pos, depth + 1)
        return pos
    elif 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
        count, pos = _container_count(data, b, pos, 0x80, 0xDE)
        for _ in range(2 * count):
            pos = value_end(data, pos, depth + 1)
        return pos
    else:  # 0xC1 is never used
        raise DecodeError("malformed MessagePack: reserved byte")
    if end > len(data):
        raise DecodeError("malformed MessagePack: truncated")
    return end


def _container_count(data: bytes, b: int, pos: int, fix: int, sized16: int) -> tuple[int, int]:
    if b < fix + 16:
        return b & 0x0F, pos
    size = 2 if b == sized16 else 4
    count = _read_uint(data, pos, size)
    # Every element takes at least one byte: a count beyond the input is a lie.
    if count > len(data) - pos:
        raise DecodeError("malformed MessagePack: truncated")
    return count, pos + size


def array_items(data: bytes, pos: int = 0) -> tuple[list[tuple[int, int]], int]:
    """Spans ``(start, end)`` of the elements of the array starting at *pos*.

    Returns the spans and the offset just past the array.
    """
    if pos >= len(data):
        raise DecodeError("malformed MessagePack: truncated")
    b = data[pos]
    if not (0x90 <= b <= 0x9F or b in (0xDC, 0xDD)):
        raise DecodeError("malformed MessagePack: expected an array")
    count, pos = _container_count(data, b, pos + 1, 0x90, 0xDC)
    if count > MAX_CONTAINER_LENGTH:  # before a span of it is listed
        limit = MAX_CONTAINER_LENGTH
        raise DecodeError(f"malformed MessagePack: more than {limit} elements in an array")
    spans = []
    for _ in range(count):
        end = value_end(data, pos)
        spans.append((pos, end))
        pos = end
    return spans, pos
