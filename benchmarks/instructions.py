"""Instructions per operation, counted by valgrind's callgrind.

Timings on a shared machine move by 20% between runs; instruction counts
do not, so this is how small optimisations are compared. Each operation
runs *n* times under ``valgrind --tool=callgrind``, as does an empty loop,
counting only inside the loop (``--toggle-collect``), and the difference is
divided by *n*::

    python benchmarks/instructions.py                  # every operation, N = 5
    python benchmarks/instructions.py --caveats 1 authorize decode

Needs valgrind on the PATH. Counts are of this process's instructions, so
they include the interpreter's work, and exclude waiting.
"""

from __future__ import annotations

import argparse
import functools
import gc
import hmac
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import ACCESS, KEY, LOCATION, caveats, floor, mint_token, unique_caveats

from macaroons_authz import (
    Macaroon,
    MemoryKeyring,
    VerificationCache,
    Verifier,
    parse_header,
    to_header,
)


def operations(n_caveats: int, runs: int = 1) -> dict[str, Callable[[], object]]:
    """The operations that can be counted, on a token of *n_caveats* caveats.

    ``unique`` and ``unique-decode`` take the next of *runs* tokens whose
    caveats no other token has (``run.unique_caveats``), so each run sees
    new caveats; they are minted for every operation, so the empty loop's
    count takes their cost away.
    """
    ring = MemoryKeyring([KEY])
    token = Macaroon.new(ring.current().kid, LOCATION, KEY)
    token.add(*caveats(n_caveats))
    data = token.encode()
    header = to_header(data)
    verifier = Verifier(ring)
    cached = Verifier(ring, cache=VerificationCache())
    decoded = Macaroon.decode(data)
    trusted = verifier.verify(header)
    cached.authorize(header, ACCESS)
    unique = [mint_token(unique_caveats(n_caveats, t)) for t in range(runs)]
    unique_headers = iter([to_header(d) for d in unique])
    unique_data = iter(unique)
    return {
        "none": lambda: None,
        "parse": lambda: parse_header(header),
        "decode": lambda: Macaroon.decode(data),
        "chain": lambda: decoded._tails(KEY),
        "verify": lambda: decoded.verify(KEY),
        "validate": lambda: trusted.validate(ACCESS),
        "authorize": lambda: verifier.authorize(header, ACCESS),
        "cached": lambda: cached.authorize(header, ACCESS),
        "unique": lambda: verifier.authorize(next(unique_headers), ACCESS),
        "unique-decode": lambda: Macaroon.decode(next(unique_data)),
        "floor": floor(data, n_caveats, lambda k, m: hmac.digest(k, m, "sha256")),
    }


def count(op: str, n: int, n_caveats: int) -> int:
    """Instructions of this script running *op* *n* times under callgrind."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--toggle-collect=functools_reduce",
            sys.executable,
            __file__,
            "--child",
            op,
            "--n",
            str(n),
            "--caveats",
            str(n_caveats),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind for {op}:\n{done.stderr}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ops", nargs="*", help="operations to count (default: all)")
    parser.add_argument("--n", type=int, default=2000, help="runs per operation")
    parser.add_argument("--caveats", type=int, default=5, help="first-party caveats (N)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    ops = operations(args.caveats, args.n if args.child else 1)
    if args.child:
        fn = ops[args.ops[0]]
        # The set-up's objects (thousands of tokens for "unique") are left
        # out of garbage collections, which then cost what the operation's
        # own garbage costs, as in a process whose heap is not all tokens.
        gc.freeze()
        # Callgrind counts only inside functools.reduce (--toggle-collect):
        # start-up, imports and set-up are left out, which they were not
        # when whole runs were subtracted (a module recompiled in one run
        # and not in the other moved counts by thousands per operation).
        functools.reduce(lambda _, __: fn(), range(args.n), None)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    unknown = set(args.ops) - set(ops)
    if unknown:
        parser.error(f"unknown operations: {', '.join(sorted(unknown))}")
    base = count("none", args.n, args.caveats)
    print(f"N = {args.caveats}, {args.n} runs each; instructions per operation:")
    for op in args.ops or [o for o in ops if o != "none"]:
        per_op = (count(op, args.n, args.caveats) - base) // args.n
        print(f"{op:10s} {per_op:>9,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
