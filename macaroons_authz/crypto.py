"""Keys and the few cryptographic steps of the format (spec section 1).

Everything cryptographic comes from the standard library (``hmac``,
``hashlib``, ``secrets``) or from ``cryptography`` (ChaCha20-Poly1305); this
module only names the steps. Randomness comes from :func:`random_bytes`
alone, so tests can replace that one function to reproduce vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = [
    "KEY_SIZE",
    "kid_for_key",
    "new_encryption_key",
    "new_signing_key",
    "random_bytes",
]

#: Size in bytes of signing keys made here and of third-party encryption keys.
KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
_FINALIZATION_KEY = b"proof-signature-finalization"


def random_bytes(n: int) -> bytes:
    """*n* bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(n)


def new_signing_key() -> bytes:
    """A new random 32-byte root (signing) key."""
    return random_bytes(KEY_SIZE)


def new_encryption_key() -> bytes:
    """A new random 32-byte key shared with a third party (``KA``)."""
    return random_bytes(KEY_SIZE)


def kid_for_key(key: bytes) -> bytes:
    """The key id convention of the Go vector generator: ``SHA-256(key)[:16]``.

    Any byte string may serve as a KID; this one is convenient because it
    identifies the key without revealing it.
    """
    check_key(key, "key")
    return hashlib.sha256(key).digest()[:16]


def check_key(key: object, what: str, size: int | None = None) -> bytes:
    """Return *key* if it is ``bytes`` (of *size*, when given); raise otherwise."""
    if not isinstance(key, bytes):
        raise TypeError(f"{what} must be bytes, not {type(key).__name__}")
    if size is not None and len(key) != size:
        raise ValueError(f"{what} must be {size} bytes long, not {len(key)}")
    return key


try:
    # OpenSSL's HMAC, as hmac.new uses it, without hmac.new's Python frames.
    # hmac.digest (OpenSSL 3's one-shot EVP_Q_mac) looks the algorithm up
    # again on every call; this path reuses the looked-up digest, which
    # makes a chain step about 30% cheaper (see docs/performance.rst).
    from _hashlib import hmac_new as _hmac_new
except ImportError:  # pragma: no cover - CPython without OpenSSL
    _hmac_new = hmac.new  # type: ignore[assignment]


def mac(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256: one step of the chain."""
    return _hmac_new(key, msg, "sha256").digest()


def chain(key: bytes, msgs: Iterable[bytes]) -> list[bytes]:
    """Every tail of an HMAC chain: ``T1 = mac(key, m1)``, ``T(i+1) = mac(Ti, m(i+1))``."""
    # One loop here rather than a call to mac() per step: the chain is the
    # hot path of verification, and the extra Python call measured 0.1 to
    # 0.3 µs per step (of about 1.4 µs).
    new = _hmac_new
    tails = []
    for msg in msgs:
        key = new(key, msg, "sha256").digest()
        tails.append(key)
    return tails


def chain_end(key: bytes, msgs: Iterable[bytes]) -> bytes:
    """The last tail of an HMAC chain (:func:`chain`'s last element), for *msgs* not empty."""
    new = _hmac_new
    for msg in msgs:
        key = new(key, msg, "sha256").digest()
    return key


def finalize(tail: bytes) -> bytes:
    """The finalized tail of a proof (spec 4.4)."""
    return mac(_FINALIZATION_KEY, tail)


def equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(a, b)


def sha256(data: bytes) -> bytes:
    """SHA-256 digest."""
    return hashlib.sha256(data).digest()


def seal(key: bytes, plaintext: bytes) -> bytes:
    """``nonce(12) || ChaCha20-Poly1305(key).encrypt(nonce, plaintext)``, no AD."""
    nonce = random_bytes(_NONCE_SIZE)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, None)


def unseal(key: bytes, box: bytes) -> bytes | None:
    """Open a :func:`seal` box; ``None`` if it is not authentic under *key*."""
    if len(key) != KEY_SIZE or len(box) < _NONCE_SIZE + _TAG_SIZE:
        return None
    try:
        return ChaCha20Poly1305(key).decrypt(box[:_NONCE_SIZE], box[_NONCE_SIZE:], None)
    except InvalidTag:
        return None
