"""Shared by the web tests: tokens minted by the library on throw-away keys, expected bodies."""

from __future__ import annotations

import base64
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import pytest
from web_app import NOW, ORG

from macaroons_authz import (
    Action,
    Macaroon,
    MemoryKeyring,
    SigningKey,
    SQLiteRevocationStore,
    app_token,
    kid_for_key,
    new_signing_key,
    org_token,
    to_header,
)


@attrs.frozen
class Tokens:
    """A key, the headers made with it, and the secrets none of the logs may show."""

    key: SigningKey
    reader: str  # GET app 42
    admin: str  # anything in the organization
    expired: str  # app 42, expired an hour before the requests
    revoked: str  # app 42; the tests revoke it
    forged: str  # the key's KID, another key
    unknown_kid: str  # a key nobody knows
    tokens: tuple[Macaroon, ...]
    other_keys: tuple[bytes, ...]

    @property
    def secrets(self) -> list[str]:
        """Every token string and every key, in each form a log could print it."""
        out = [h.removeprefix("FlyV1 ") for h in (self.reader, self.admin, self.expired)]
        out += [h.removeprefix("FlyV1 ") for h in (self.revoked, self.forged, self.unknown_kid)]
        for raw in (self.key.key, *self.other_keys):
            out += [
                raw.hex(),
                base64.b64encode(raw).decode(),
                base64.urlsafe_b64encode(raw).decode(),
            ]
            out.append(repr(raw)[2:-1])
        return out


def mint(key: SigningKey) -> Tokens:
    """The test tokens, on *key*."""
    reader = app_token(key, ORG, [42], actions=Action.READ, expires_in=3600, now=NOW)
    admin = org_token(key, ORG, expires_in=3600, now=NOW)
    expired = app_token(key, ORG, [42], expires_in=3600, now=NOW - 7200)
    revoked = app_token(key, ORG, [42], expires_in=3600, now=NOW)
    forger, stranger = new_signing_key(), new_signing_key()
    forged = org_token(forger, ORG, kid=kid_for_key(key.key), expires_in=3600, now=NOW)
    unknown = org_token(stranger, ORG, expires_in=3600, now=NOW)
    tokens = (reader, admin, expired, revoked, forged, unknown)
    h = [to_header(t) for t in tokens]
    return Tokens(key, h[0], h[1], h[2], h[3], h[4], h[5], tokens, (forger, stranger))


def memory_tokens() -> tuple[MemoryKeyring, Tokens]:
    ring = MemoryKeyring()
    ring.generate()
    return ring, mint(ring.current())


UNAUTHENTICATED_BODY = {
    "type": "about:blank",
    "title": "Unauthorized",
    "status": 401,
    "detail": "A valid FlyV1 token is required.",
}


def problem_headers(body: bytes, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (
        ("Content-Type", "application/problem+json"),
        ("Content-Length", str(len(body))),
        *extra,
    )


def forbidden_body(*failed: str) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "The token does not allow this request.",
        "failed_caveats": list(failed),
    }


def broken_revocations(tmp_path: Path) -> SQLiteRevocationStore:
    """A real SQLite store whose file was overwritten after it was opened."""
    path = tmp_path / "revocations.db"
    store = SQLiteRevocationStore(path)
    store.close()
    for leftover in tmp_path.glob("revocations.db-*"):
        leftover.unlink()
    path.write_bytes(b"this is not a database" * 512)
    with closing(sqlite3.connect(path)) as conn, pytest.raises(sqlite3.DatabaseError):
        conn.execute("SELECT 1 FROM revocations")
    return store
