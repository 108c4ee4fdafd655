"""The nonce: key id, random bytes and the proof flag (spec section 3.2)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from typing import Any

import attrs

from . import _msgpack
from ._gojson import load_json, unb64
from .caveats._base import blob
from .errors import DecodeError

__all__ = ["Nonce"]

_UUID_NAMESPACE = uuid.UUID("968fc2c6-a94f-4988-a544-2ad72b02f222")


def _uuid5(namespace: uuid.UUID, name: bytes) -> uuid.UUID:
    # uuid.uuid5 takes only str names before Python 3.12; the format hashes raw bytes.
    digest = hashlib.sha1(namespace.bytes + name, usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


@attrs.frozen
class Nonce:
    """The first element of every token.

    Attributes:
        kid: the key id, in clear; ``None`` stands for Go's nil slice. For a
            discharge it is the whole encrypted ticket.
        rnd: random bytes (16 for tokens made here).
        proof: whether the token is a proof (its tail is finalized).
        legacy: the token used the 2-element nonce of older tokens; it is kept
            so the nonce re-encodes to the bytes that were signed.
    """

    kid: bytes | None
    rnd: bytes | None
    proof: bool = False
    legacy: bool = attrs.field(default=False, kw_only=True)

    def to_msgpack(self) -> list[Any]:
        """The nonce as the MessagePack array it is encoded as."""
        if self.legacy:
            return [self.kid, self.rnd]
        return [self.kid, self.rnd, self.proof]

    def encode(self) -> bytes:
        """The canonical MessagePack bytes (what the chain's first step MACs)."""
        return _msgpack.pack(self.to_msgpack())

    @classmethod
    def from_msgpack(cls, obj: object) -> Nonce:
        """Build a nonce from a decoded MessagePack value."""
        if type(obj) is not list:
            raise DecodeError("nonce must be an array")
        if len(obj) == 3:
            kid, rnd, proof = obj
            if type(proof) is not bool:
                raise DecodeError("nonce proof flag must be a bool")
            # Bytes, as tokens carry them, need no conversion.
            if type(kid) is not bytes or type(rnd) is not bytes:
                kid, rnd = blob(kid, "nonce kid"), blob(rnd, "nonce rnd")
            return cls(kid, rnd, proof)
        if len(obj) == 2:
            return cls(blob(obj[0], "nonce kid"), blob(obj[1], "nonce rnd"), legacy=True)
        raise DecodeError(f"unknown nonce format: {len(obj)} fields")

    @classmethod
    def decode(cls, data: bytes) -> Nonce:
        """Decode a nonce from its MessagePack bytes."""
        return cls.from_msgpack(_msgpack.unpack(data))

    @property
    def uuid(self) -> uuid.UUID:
        """The nonce UUID that Fly.io uses in logs and "nonce emails"."""
        first = _uuid5(_UUID_NAMESPACE, self.kid or b"")
        return _uuid5(first, self.rnd or b"")

    @property
    def email(self) -> str:
        """The "nonce email" form of :attr:`uuid`: ``<uuid>@tokens.fly.io``."""
        return f"{self.uuid}@tokens.fly.io"

    def to_json(self) -> str:
        """The JSON form: a string holding the base64 of the MessagePack bytes."""
        return json.dumps(base64.b64encode(self.encode()).decode("ascii"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Nonce:
        """Parse the JSON form made by :meth:`to_json`.

        Raises:
            DecodeError: not JSON, too deeply nested, or not a base64 string.
        """
        value = load_json(text, "nonce")
        if type(value) is not str:
            raise DecodeError("nonce JSON must be a base64 string")
        try:
            raw = unb64(value)
        except (ValueError, binascii.Error):
            raise DecodeError("nonce JSON must be a base64 string") from None
        return cls.decode(raw)
