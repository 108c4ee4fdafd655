"""Decoding tokens: one general path and two fast ones that agree with it byte for byte.

A token is decoded by the first path that applies:

* *Known*: the token is in the canonical layout and its caveat set is in
  the registry's memo (from its second sighting on), marked as canonical:
  it is read by slicing, without unpacking (:func:`decode_known`).
* *Fast*: one C-level ``msgpack`` unpack of the whole token, then each
  caveat body that is already canonical is built by its class's
  ``from_canonical``, which checks the body's shape once; its MAC input is
  the plain re-encoding of ``[type, body]``, which for such a body is the
  canonical one (:func:`decode_token_caveats`).
* *General*: every other caveat goes through ``from_msgpack`` and
  ``packed()``, which check each field and re-encode canonically; a caveat
  of an unknown type makes the set be read again from its raw bytes.

The MAC inputs are always canonical encodings, never raw wire bytes
(unknown caveats excepted: they keep theirs), so a caveat written
non-canonically still MACs in its canonical form, as Go does.
``tests/test_cold_path.py`` checks that the paths agree on generated and
mutated tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _msgpack
from .caveats._base import (
    Caveat,
    MemoEntry,
    NeedsRawBytes,
    Registry,
    blob,
    check_set,
    decode_set_bytes,
    decode_set_value,
    pack_set,
    string,
)
from .caveats._fast import FastBuilders
from .caveats.registry import DEFAULT_REGISTRY
from .errors import DecodeError
from .nonce import Nonce

if TYPE_CHECKING:
    from .macaroon import Macaroon

#: The largest encoded token (in bytes) that ``Macaroon.decode`` accepts.
MAX_TOKEN_SIZE = 256 * 1024
#: Caveat sets whose key is longer than this are not memoized.
MEMO_MAX_KEY = 512
#: How many caveat sets a registry remembers.
MEMO_ENTRIES = 4096

_NO_BUILDERS: FastBuilders = {}


def decode(cls: type[Macaroon], data: bytes, registry: Registry | None = None) -> Macaroon:
    """Decode a token from its MessagePack bytes.

    Bytes after the token are ignored, as Go does. Caveats of unknown
    types decode to :class:`~macaroons_authz.UnregisteredCaveat`, which
    keep their bytes (so the token still verifies) and fail validation.
    *registry* is the caveat registry to decode with (the default one if
    ``None``). This is :meth:`Macaroon.decode <macaroons_authz.Macaroon.decode>`.

    Raises:
        DecodeError: *data* is not a token, or is over :data:`MAX_TOKEN_SIZE`.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    if not data:
        raise DecodeError("empty token")
    if len(data) > MAX_TOKEN_SIZE:
        raise DecodeError(f"token larger than {MAX_TOKEN_SIZE} bytes")
    reg = DEFAULT_REGISTRY if registry is None else registry
    memo: dict[bytes, MemoEntry] | None = getattr(reg, "memo", None)
    layout = canonical_layout(data)
    raw: bytes | None = None
    if memo is not None and layout is not None:
        # The set's bytes: the known path's key, and the memo's on a miss.
        raw = data[layout[2] : layout[3]]
        known = _known(cls, data, memo, layout, raw)
        if known is not None:
            return known
    obj = _msgpack.unpack(data)
    if type(obj) is not list or len(obj) != 4:
        raise DecodeError("token must be an array of 4 fields")
    value, location, items, tail = obj
    nonce: Nonce | None = None
    kid: bytes | None
    proof: bool
    if layout is not None:
        # The nonce is [bin8, bin8 of 16, bool], written canonically, and
        # is built only if asked for (Macaroon.nonce).
        kid, proof = value[0], value[2]
        nonce_packed = data[1 : layout[0] + 19]
    elif (
        type(value) is list
        and len(value) == 3
        and type(value[0]) is bytes
        and type(value[1]) is bytes
        and type(value[2]) is bool
    ):
        # A nonce written otherwise: its re-encoding is canonical.
        kid, proof = value[0], value[2]
        nonce_packed = _msgpack.pack(value)
    else:
        nonce = Nonce.from_msgpack(value)
        kid, proof, nonce_packed = nonce.kid, nonce.proof, nonce.encode()
    if type(location) is not str:
        location = string(location, "location")
    tail_bytes = tail if type(tail) is bytes else blob(tail, "tail")
    if tail_bytes is None or len(tail_bytes) != 32:
        raise DecodeError("tail must be 32 bytes")
    if memo is not None and layout is None:
        raw = set_bytes(data, nonce_packed, location)
    try:
        caveats, packs = decode_token_caveats(items, reg, memo, raw)
    except NeedsRawBytes:
        spans, _ = _msgpack.array_items(data)
        start, end = spans[2]
        caveats, packs = tuple(decode_set_bytes(data[start:end], reg)[0]), None
    token = cls._from_canonical(nonce_packed, kid, proof, location, caveats, packs, tail_bytes)
    if nonce is not None:
        token._nonce = nonce
    return token


def decode_token_caveats(
    items: Any, registry: Registry, memo: dict[bytes, MemoEntry] | None, raw: bytes | None = None
) -> tuple[tuple[Caveat, ...], tuple[bytes, ...] | None]:
    """A token's caveats and, with a *memo*, their canonical MAC inputs.

    The memo maps bytes that begin with the encoding of a caveat set (the
    set's wire bytes *raw*, when the caller has them, or else its plain
    re-encoding) to its caveats and their canonical encodings. Decoding
    depends only on the first value of those bytes, so equal keys always
    give equal results. A set is remembered from its second sighting on
    (see ``_remember``). A token's whole set is looked up first (a set
    seen before costs one lookup). On a miss each caveat whose body is
    canonical is built directly (see the module docstring); any other is
    decoded by the general path and remembered alone, as a one-caveat set,
    which spares decoding it again in later tokens of the same recipe.

    Raises:
        NeedsRawBytes: the set holds an unregistered caveat.
    """
    if memo is None:
        return tuple(decode_set_value(items, registry)), None
    n = check_set(items, 0)
    pack = _msgpack.packer()
    whole = pack(items) if raw is None else raw
    hit = memo.get(whole)
    if hit is not None and hit is not _SEEN_ONCE:
        return hit[0], hit[1]
    seen = hit is not None
    builders: FastBuilders = getattr(registry, "fast_builders", _NO_BUILDERS)
    caveats: list[Caveat] = []
    packs: list[bytes] = []
    for i in range(0, n, 2):
        number = items[i]
        body = items[i + 1]
        build = builders.get(number) if type(number) is int else None
        caveat = None if build is None else build(body, builders, 0)
        if caveat is not None:
            caveats.append(caveat)
            packs.append(pack((number, body)))
            continue
        one = [number, body]
        key = pack(one) if n > 2 else whole
        hit = memo.get(key)
        if hit is None or hit is _SEEN_ONCE:
            (caveat,) = decode_set_value(one, registry)
            caveats.append(caveat)
            packs.append(caveat.packed())
            _remember(memo, key, hit is not None, (caveat,), (packs[-1],))
        else:
            caveats.extend(hit[0])
            packs.extend(hit[1])
    result = tuple(caveats), tuple(packs)
    _remember(memo, whole, seen, *result)
    return result


#: The memo's entry for a set seen once: its key alone, which no path uses.
_SEEN_ONCE: MemoEntry = ((), (), False)


def _remember(
    memo: dict[bytes, MemoEntry],
    key: bytes,
    seen: bool,
    caveats: tuple[Caveat, ...],
    packs: tuple[bytes, ...],
) -> None:
    # A set is remembered when it is seen a second time: most sets of a
    # service that meets many tokens are never seen again, and keeping
    # their caveats alive in the memo cost the garbage collector more than
    # decoding a set twice (10k instructions a token of 5 caveats).
    if len(key) <= MEMO_MAX_KEY:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        # Whether the key is exactly the set's canonical encoding is found
        # on the first hit (see _known).
        memo[key] = (caveats, packs, None) if seen else _SEEN_ONCE


def set_bytes(data: bytes, nonce_packed: bytes, location: str) -> bytes | None:
    """Bytes of *data* that begin with the caveat set and end before the tail.

    When the token's nonce and location were written canonically (always,
    for tokens made by Go or by this library), the caveat set starts right
    after them. The tail's encoding takes at least 34 bytes, so the set ends
    at most 34 bytes before the end; what lies between the set and that
    point (only ever there with trailing bytes) makes a key of its own. A
    memo entry depends only on the first value of its key, which here is
    the caveat set itself, so its entries stay exact. ``None`` when the
    nonce or location was written otherwise.
    """
    start = 1 + len(nonce_packed)
    packed_location = _msgpack.pack(location)
    if data[0] != 0x94 or not (
        data.startswith(nonce_packed, 1) and data.startswith(packed_location, start)
    ):
        return None
    return data[start + len(packed_location) : len(data) - 34]


def canonical_layout(data: bytes) -> tuple[int, int, int, int] | None:
    """Where a token in the canonical layout has its random bytes, location, set and tail.

    The layout: ``94``, the nonce ``93 c4 <n> <kid> c4 10 <rnd> c2|c3``,
    the location as ``fixstr`` or ``str8``, then (the caveat set and)
    ``c4 20 <tail>`` ending the data. Each of the first two is one
    MessagePack value, so the caveat set starts where this says; that the
    set ends where the tail begins is not checked (see :func:`decode_known`).
    Every index is checked to lie before the tail, so short input gives
    ``None``, as does any other layout.
    """
    tail_at = len(data) - 34
    # Byte comparisons rather than startswith, whose argument parsing costs
    # about 1.1k instructions a call.
    if tail_at < 24 or data[:3] != b"\x94\x93\xc4":
        return None
    rnd_at = 4 + data[3]
    at = rnd_at + 19  # just past the nonce
    if at >= tail_at or data[rnd_at] != 0xC4 or data[rnd_at + 1] != 0x10:
        return None
    flag = data[at - 1]
    head = data[at]
    if 0xA0 <= head <= 0xBF:
        at += 1
        set_at = at + (head & 0x1F)
    elif head == 0xD9:
        at += 2
        set_at = at + data[at - 1]
    else:
        return None
    if (
        set_at >= tail_at
        or (flag != 0xC2 and flag != 0xC3)
        or data[tail_at] != 0xC4
        or data[tail_at + 1] != 0x20
    ):
        return None
    return rnd_at, at, set_at, tail_at


def decode_known(cls: type[Macaroon], data: bytes, memo: dict[bytes, MemoEntry]) -> Macaroon | None:
    """*data* decoded without unpacking it, or ``None`` to take another path.

    Only a token in the canonical layout (:func:`canonical_layout`) whose
    caveat set the memo holds exactly qualifies: its bytes are a memo key
    marked as the set's canonical encoding. The mark proves the set ends
    where the tail begins, which rules out trailing bytes being taken for
    the tail.
    """
    layout = canonical_layout(data)
    return None if layout is None else _known(cls, data, memo, layout, data[layout[2] : layout[3]])


def _known(
    cls: type[Macaroon],
    data: bytes,
    memo: dict[bytes, MemoEntry],
    layout: tuple[int, int, int, int],
    key: bytes,
) -> Macaroon | None:
    hit = memo.get(key)
    if hit is None or not (hit[2] or (hit[2] is None and _mark_exact(memo, key, hit))):
        return None
    rnd_at, at, set_at, tail_at = layout
    return cls._from_canonical(
        data[1 : rnd_at + 19],
        data[4:rnd_at],
        data[rnd_at + 18] == 0xC3,
        data[at:set_at].decode("utf-8", "surrogateescape"),
        hit[0],
        hit[1],
        data[tail_at + 2 :],
    )


def _mark_exact(memo: dict[bytes, MemoEntry], key: bytes, hit: MemoEntry) -> bool:
    # Marks the entry on its first hit with whether *key* is exactly the
    # set's canonical encoding (see _remember).
    exact = key == pack_set(hit[1], len(hit[1]))
    memo[key] = hit[0], hit[1], exact
    return exact


def nonce_kid(data: bytes) -> bytes | None:
    """The key id of the token *data*, reading only its nonce, as Go's ``DecodeNonce``.

    Raises:
        DecodeError: *data* does not begin with an array whose first element is a nonce.
    """
    return Nonce.from_msgpack(_msgpack.first_in_array(data)).kid
