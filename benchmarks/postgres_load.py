"""A bounded load test of verifiers sharing one PostgreSQL database (loopback only).

Run::

    python benchmarks/postgres_load.py --url postgresql://USER:PASSWORD@127.0.0.1:PORT/DB

(the URL defaults to ``$MACAROONS_AUTHZ_TEST_PG``). It creates a schema of its
own, mints tokens, and runs three phases, each bounded in time:

1. *cache off*: N verifier threads verify headers in a loop; every
   verification reads the revocation table and the keyring (two prepared
   statements) and checks the token's MACs.
2. *cache on*: the same with a :class:`~macaroons_authz.VerificationCache` and
   a :class:`~macaroons_authz.stores.PostgresInvalidator` per verifier
   thread (each with its own listening connection, as a fleet's machines
   would have).
3. *revocation to refusal*: the cached verifiers keep verifying a set of
   victim tokens while another store (another pool, as another machine)
   revokes them one at a time; each verifier records when it first refuses
   each victim. The latency is measured from the moment ``revoke()``
   returned (committed) to that refusal.

It prints verifications per second for phases 1 and 2, and the latency's
median, 99th percentile and maximum for phase 3, then drops its schema. It
refuses any server that is not on this machine.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg.conninfo import conninfo_to_dict

from macaroons_authz import (
    VerificationCache,
    VerificationError,
    Verifier,
    __version__,
    org_token,
    restrict,
    to_header,
    token_id,
)
from macaroons_authz.stores import (
    PostgresInvalidator,
    PostgresKeyring,
    PostgresRevocationStore,
)

ORG = 1234
MAX_SECONDS = 30.0
MAX_THREADS = 64


def check_loopback(url: str) -> None:
    """Refuse any server that is not on this machine."""
    hosts = str(conninfo_to_dict(url).get("host") or "").split(",")
    for host in hosts:
        if host == "" or host.startswith("/") or host == "localhost":
            continue  # a Unix socket, or the local host
        try:
            if ipaddress.ip_address(host).is_loopback:
                continue
        except ValueError:
            pass
        sys.exit(f"refusing {host!r}: this load test only runs against a loopback server")


def run_threads(n: int, seconds: float, work: Callable[[int, float], int]) -> tuple[int, float]:
    """Run ``work(i, deadline)`` in *n* threads; the total it returns, and the elapsed time."""
    counts = [0] * n
    errors: list[BaseException] = []
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        try:
            counts[i] = work(i, deadline)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    if errors:
        raise errors[0]
    return sum(counts), elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("MACAROONS_AUTHZ_TEST_PG", ""))
    parser.add_argument("--threads", type=int, default=8, help="verifier threads (at most 64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase (at most 30)")
    parser.add_argument("--tokens", type=int, default=200, help="distinct headers verified")
    parser.add_argument("--revocations", type=int, default=20, help="victims in phase 3")
    args = parser.parse_args()
    if not args.url:
        sys.exit("give --url or set MACAROONS_AUTHZ_TEST_PG")
    check_loopback(args.url)
    threads = max(1, min(args.threads, MAX_THREADS))
    seconds = max(0.5, min(args.seconds, MAX_SECONDS))
    n_tokens = max(1, min(args.tokens, 10_000))
    n_victims = max(1, min(args.revocations, 200))

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    kek = os.urandom(32)
    ring = PostgresKeyring(args.url, kek=kek, schema=schema, pool_size=threads)
    store = PostgresRevocationStore(args.url, schema=schema, pool_size=threads)
    revoker = PostgresRevocationStore(args.url, schema=schema, pool_size=1)
    invalidators: list[PostgresInvalidator] = []
    try:
        ring.migrate()
        store.migrate()
        ring.generate()
        key = ring.current()
        headers = [to_header(restrict(org_token(key, ORG), apps=[i])) for i in range(n_tokens)]
        with psycopg.connect(args.url) as conn:
            server = conn.execute("SHOW server_version").fetchone()
        print(
            f"macaroons_authz {__version__}, Python {platform.python_version()}, "
            f"PostgreSQL {server[0] if server else '?'}, {os.cpu_count()} CPUs; "
            f"{threads} verifier threads, {seconds:g} s per phase, {n_tokens} headers"
        )

        # -- 1. cache off
        def hammer(verifier: Verifier, i: int, deadline: float) -> int:
            done = 0
            while time.monotonic() < deadline:
                for _ in range(20):
                    verifier.verify(headers[(i * 7919 + done) % n_tokens])
                    done += 1
            return done

        def uncached(i: int, deadline: float) -> int:
            return hammer(Verifier(ring, revocations=store), i, deadline)

        count, elapsed = run_threads(threads, seconds, uncached)
        off = count / elapsed
        print(f"cache off: {count} verifications in {elapsed:.2f} s = {off:,.0f}/s")

        # -- 2. cache on, each verifier with its own cache and invalidator
        caches = [VerificationCache(poll_interval=float("inf")) for _ in range(threads)]
        verifiers = [Verifier(ring, revocations=store, cache=c) for c in caches]
        for cache in caches:
            inv = PostgresInvalidator(store, cache, keyring=ring)
            inv.start()
            invalidators.append(inv)
        for inv in invalidators:
            if not inv.wait_until_healthy(10):
                sys.exit(f"an invalidator did not connect: {inv.last_error}")

        def cached(i: int, deadline: float) -> int:
            return hammer(verifiers[i], i, deadline)

        count, elapsed = run_threads(threads, seconds, cached)
        on = count / elapsed
        hits = sum(c.hits for c in caches)
        misses = sum(c.misses for c in caches)
        print(
            f"cache on:  {count} verifications in {elapsed:.2f} s = {on:,.0f}/s "
            f"({on / off:.1f}x; hit rate {hits / max(hits + misses, 1):.1%})"
        )

        # -- 3. revocation to refusal
        victim_tokens = [org_token(key, ORG) for _ in range(n_victims)]
        victims = [to_header(t) for t in victim_tokens]
        victim_ids = [token_id(t) for t in victim_tokens]
        for verifier in verifiers:
            for header in victims:
                verifier.verify(header)
        committed: dict[int, float] = {}
        refused: list[dict[int, float]] = [{} for _ in range(threads)]
        stop = threading.Event()

        def watch(i: int, deadline: float) -> int:
            verifier = verifiers[i]
            seen = refused[i]
            checks = 0
            while len(seen) < n_victims and not stop.is_set() and time.monotonic() < deadline:
                for v, header in enumerate(victims):
                    if v in seen:
                        continue
                    try:
                        verifier.verify(header)
                    except VerificationError:
                        seen[v] = time.monotonic()
                    checks += 1
                time.sleep(0.001)  # a verifier serving traffic, not spinning
            return checks

        def revoke_all() -> None:
            for v, victim in enumerate(victim_ids):
                time.sleep(0.05)
                revoker.revoke(victim, reason="load test")
                committed[v] = time.monotonic()

        watcher = threading.Thread(
            target=lambda: run_threads(threads, n_victims * 0.05 + 10, watch), daemon=True
        )
        watcher.start()
        revoke_all()
        watcher.join(n_victims * 0.05 + 15)
        stop.set()
        latencies = [
            (seen[v] - committed[v]) * 1000 for seen in refused for v in seen if v in committed
        ]
        missing = threads * n_victims - len(latencies)
        print(
            f"revocation to refusal over {len(latencies)} (verifier, revocation) pairs: "
            f"median {statistics.median(latencies):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms"
            + (f"; {missing} NOT refused within the bound" if missing else "")
        )
    finally:
        for inv in invalidators:
            inv.stop()
        for closeable in (ring, store, revoker):
            closeable.close()
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
