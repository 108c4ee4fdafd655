"""A verifier process for the fleet tests, driven line by line over stdin/stdout.

Run as ``python pg_verifier_process.py`` with the environment variables
PG_URL, PG_SCHEMA, PG_KEK (hex) and optionally MAX_OUTAGE, HEARTBEAT and
RECONNECT_DELAY. It builds a Verifier on PostgreSQL with a cache that never
polls the feed itself (so only the invalidator can drop entries), starts a
PostgresInvalidator, prints "ready", then answers one line per command:

    verify HEADER             -> "ok hit" | "ok miss" | "refused MESSAGE" | "error MESSAGE"
    until-refused HEADER SECS -> "refused ELAPSED" | "timeout"
    revoke TOKEN_ID           -> "revoked True|False"
    status                    -> "healthy=B held=B disconnects=N"
    wait-healthy SECS         -> "healthy True|False"
    quit
"""

from __future__ import annotations

import os
import sys
import time

from macaroons_authz import StoreError, VerificationCache, VerificationError, Verifier
from macaroons_authz.stores import (
    PostgresInvalidator,
    PostgresKeyring,
    PostgresRevocationStore,
)


def main() -> None:
    url = os.environ["PG_URL"]
    schema = os.environ["PG_SCHEMA"]
    ring = PostgresKeyring(url, kek=bytes.fromhex(os.environ["PG_KEK"]), schema=schema, timeout=5)
    store = PostgresRevocationStore(url, schema=schema, timeout=5)
    cache = VerificationCache(poll_interval=float("inf"))
    verifier = Verifier(ring, revocations=store, cache=cache)
    invalidator = PostgresInvalidator(
        store,
        cache,
        keyring=ring,
        max_outage=float(os.environ.get("MAX_OUTAGE", "5")),
        heartbeat=float(os.environ.get("HEARTBEAT", "1")),
        reconnect_delay=float(os.environ.get("RECONNECT_DELAY", "0.5")),
    )
    invalidator.start()
    if not invalidator.wait_until_healthy(10):
        print("error the invalidator did not catch up", flush=True)
        return
    print("ready", flush=True)

    def verify(header: str) -> str:
        hits = cache.hits
        try:
            verifier.verify(header)
        except VerificationError as exc:
            return f"refused {exc}"
        except StoreError as exc:
            return f"error {exc}"
        return "ok hit" if cache.hits > hits else "ok miss"

    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        if command == "verify":
            answer = verify(rest)
        elif command == "until-refused":
            header, _, seconds = rest.rpartition(" ")
            start = time.monotonic()
            deadline = start + float(seconds)
            answer = "timeout"
            while time.monotonic() < deadline:
                if verify(header).startswith("refused"):
                    answer = f"refused {time.monotonic() - start:.4f}"
                    break
                time.sleep(0.001)
        elif command == "revoke":
            answer = f"revoked {store.revoke(rest, reason='fleet test')}"
        elif command == "status":
            answer = (
                f"healthy={invalidator.healthy} held={cache.held} "
                f"disconnects={invalidator.disconnects}"
            )
        elif command == "wait-healthy":
            caught_up = invalidator.wait_until_healthy(float(rest))
            answer = f"healthy {caught_up and invalidator.healthy}"
        elif command == "quit":
            break
        else:
            answer = f"error unknown command {command!r}"
        print(answer, flush=True)
    invalidator.stop()
    ring.close()
    store.close()


if __name__ == "__main__":
    main()
