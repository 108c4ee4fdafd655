"""The decode memo's memory: bytes per entry, and peak RSS after many first-seen tokens.

Each token has N caveats whose values no other token has (``run.unique_caveats``),
so every one is decoded for the first time and adds a memo entry (its key
alone: a set is remembered whole from its second sighting on); the memo
stays bounded (``_decode.MEMO_ENTRIES`` entries of at most
``_decode.MEMO_MAX_KEY`` bytes of key)::

    python benchmarks/memo_memory.py                      # 100,000 tokens, N = 5
    python benchmarks/memo_memory.py --tokens 20000 --caveats 20

Tokens are minted one at a time and checked in full (``Verifier.authorize``),
so the peak resident set size is the process's: interpreter, library, memo.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import ACCESS, KEY, mint_token, unique_caveats

from macaroons_authz import DEFAULT_REGISTRY, Macaroon, MemoryKeyring, Verifier, to_header
from macaroons_authz._decode import MEMO_ENTRIES


def bytes_per_entry(n_caveats: int, entries: int, sightings: int) -> float:
    """Memory the memo holds per entry, measured with tracemalloc over *entries* tokens.

    Each token is decoded *sightings* times: a caveat set is remembered
    whole from its second sighting on; the first leaves only its key.
    """
    tokens = [mint_token(unique_caveats(n_caveats, t)) for t in range(entries)]
    memo = DEFAULT_REGISTRY.memo
    memo.clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for data in tokens:
        for _ in range(sightings):
            Macaroon.decode(data)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    count = len(memo)
    memo.clear()
    return held / count


def peak_rss_mib() -> float:
    """The process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000, help="distinct tokens to check")
    parser.add_argument("--caveats", type=int, default=5, help="first-party caveats (N)")
    args = parser.parse_args(argv)
    n = args.caveats
    seen_once = bytes_per_entry(n, min(2000, MEMO_ENTRIES), 1)
    per_entry = bytes_per_entry(n, min(2000, MEMO_ENTRIES), 2)
    verifier = Verifier(MemoryKeyring([KEY]))
    start = peak_rss_mib()
    for t in range(args.tokens):
        verifier.authorize(to_header(mint_token(unique_caveats(n, t))), ACCESS)
    print(
        f"N = {n}: memo entry {per_entry:,.0f} bytes (tracemalloc, caveat objects included); "
        f"{seen_once:,.0f} bytes for a set seen once (its key)"
    )
    print(
        f"after {args.tokens:,} distinct tokens: memo {len(DEFAULT_REGISTRY.memo):,} entries "
        f"(at most {MEMO_ENTRIES:,}), peak RSS {peak_rss_mib():.1f} MiB "
        f"({start:.1f} MiB before the first)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
