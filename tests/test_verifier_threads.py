"""One Verifier shared by 16 threads: the decisions of one thread, and never a stray error.

What may be shared (docs/guides/web.rst, "Sharing one verifier"): a
:class:`Verifier` with its :class:`VerificationCache` and its stores, by any
number of threads. The test gives 16 threads one verifier over SQLite
stores with a cache small enough to evict all the time, and 100,000
decisions in all: allowed, denied, expired, revoked, forged, unknown-key,
malformed, and headers of several permission tokens. Each decision must
equal the one a single thread made first.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from web_app import AT, NOW, ORG
from web_helpers import mint

from macaroons_authz import (
    Action,
    FlyAccess,
    MacaroonError,
    SQLiteKeyring,
    SQLiteRevocationStore,
    VerificationCache,
    Verifier,
    app_token,
    to_header,
    token_id,
)

THREADS = 16
DECISIONS = 100_000

ACCESSES = [
    FlyAccess(org_id=ORG, app_id=42, action=Action.READ, at=AT),
    FlyAccess(org_id=ORG, app_id=42, action=Action.DELETE, at=AT),
    FlyAccess(org_id=ORG, app_id=43, action=Action.READ, at=AT),
]


def test_one_verifier_in_16_threads_decides_as_one_thread(tmp_path: Path) -> None:
    with (
        SQLiteKeyring(tmp_path / "keys.db") as ring,
        SQLiteRevocationStore(tmp_path / "revocations.db") as revocations,
    ):
        ring.generate()
        t = mint(ring.current())
        revocations.revoke(token_id(t.tokens[3]))
        # More distinct allowed tokens than the cache holds: entries are
        # evicted and re-verified (SQLite look-ups) all along.
        readers = [
            to_header(app_token(ring.current(), ORG, [42], actions=Action.READ, now=NOW))
            for _ in range(24)
        ]
        raw = {name: getattr(t, name).removeprefix("FlyV1 ") for name in ("reader", "forged")}
        headers = [
            *readers,
            t.admin,
            t.expired,
            t.revoked,
            t.forged,
            t.unknown_kid,
            f"FlyV1 {raw['forged']},{raw['reader']}",
            f"{t.revoked},{raw['reader']}",
            "FlyV1 fm2_!!!",
        ]
        cache = VerificationCache(max_entries=16, poll_interval=0.01)
        verifier = Verifier(ring, revocations=revocations, cache=cache)
        requests = [(h, a) for h in headers for a in ACCESSES]

        def decide(header: str, access: FlyAccess) -> object:
            try:
                return verifier.authorize_token(header, access)
            except MacaroonError as exc:
                return (type(exc), str(exc))

        expected = [decide(h, a) for h, a in requests]
        kinds = {type(e).__name__ if not isinstance(e, tuple) else e[0].__name__ for e in expected}
        assert kinds == {
            "VerifiedToken",
            "UnauthorizedForResourceError",
            "UnauthorizedError",
            "VerificationError",
            "NoTokenAllowedError",
            "DecodeError",
        }, kinds

        per_thread = DECISIONS // THREADS
        mismatches: list[tuple[int, object]] = []
        errors: list[BaseException] = []
        start = threading.Barrier(THREADS)

        def work(offset: int) -> None:
            try:
                start.wait()
                for n in range(per_thread):
                    i = (n * 7 + offset) % len(requests)
                    got = decide(*requests[i])
                    if got != expected[i]:
                        mismatches.append((i, got))
            except BaseException as exc:
                errors.append(exc)

        began = time.monotonic()
        threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        elapsed = time.monotonic() - began
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert mismatches == []
        assert per_thread * THREADS == DECISIONS
        # The cache served and missed throughout, and stayed within its bounds.
        assert cache.hits > 0 and cache.misses > 0
        assert len(cache) <= 16 and cache.nbytes <= cache.max_bytes
        assert elapsed < 120
