"""The cryptographic steps agree with the standard library's HMAC-SHA256."""

from __future__ import annotations

import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from macaroons_authz import crypto

KEYS = st.binary(min_size=0, max_size=100)
MESSAGES = st.binary(min_size=0, max_size=300)


@settings(max_examples=200)
@given(key=KEYS, msg=MESSAGES)
def test_mac_is_hmac_sha256(key: bytes, msg: bytes) -> None:
    assert crypto.mac(key, msg) == hmac.digest(key, msg, "sha256")


@settings(max_examples=100)
@given(key=KEYS, msgs=st.lists(MESSAGES, max_size=8))
def test_chain_is_every_tail_of_repeated_hmac(key: bytes, msgs: list[bytes]) -> None:
    expected = []
    tail = key
    for msg in msgs:
        tail = hmac.digest(tail, msg, "sha256")
        expected.append(tail)
    assert crypto.chain(key, msgs) == expected
    if msgs:
        assert crypto.chain_end(key, msgs) == expected[-1]


def test_finalize_is_hmac_under_the_finalization_key() -> None:
    tail = bytes(range(32))
    assert crypto.finalize(tail) == hmac.digest(b"proof-signature-finalization", tail, "sha256")
