"""Side-by-side benchmarks: macaroons_authz, pymacaroons and the floor of the format.

Run ``python benchmarks/run.py`` (``--quick`` for a short run, ``--full`` for
a long one). Prints a markdown table of median microseconds per operation,
measured in this one process, and the ratios the project tracks.

The floor is the least any verifier of this format can do in Python: one
``hmac.digest`` per chain step (N caveats + the nonce), one
``msgpack.unpackb`` and one base64 decode of a token of the same size.
This library's HMAC call (``crypto.mac``) is cheaper than ``hmac.digest``,
so the table also compares the full check with a floor made of that call.
"""

from __future__ import annotations

import argparse
import base64
import gc
import hmac
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from macaroons_authz import (
    DEFAULT_REGISTRY,
    Action,
    Apps,
    Caveat,
    ConfineOrganization,
    FeatureSet,
    FlyAccess,
    IfPresent,
    Macaroon,
    Machines,
    MemoryKeyring,
    Organization,
    ResourceSet,
    ValidityWindow,
    VerificationCache,
    Verifier,
    __version__,
    crypto,
    discharge_ticket,
    new_encryption_key,
    parse_header,
    to_header,
)

ORG, APP, MACHINE = 1234, 42, "3d8d9e1b"
NOW = 1_700_000_000
LOCATION = "https://api.fly.io/v1"
AUTH = "https://auth.fly.io"
KEY = bytes(range(32))


def caveats(n: int) -> list[Caveat]:
    """N distinct first-party caveats: Organization, Apps, ValidityWindow, Machines, IfPresent.

    Each allows :data:`ACCESS`. The Organization caveats differ in bits of
    the mask above the five actions, so that ``add`` keeps all N.
    """
    cycle: list[Callable[[int], Caveat]] = [
        lambda i: Organization(ORG, Action.ALL | (i // 5) << 5),
        lambda i: Apps(ResourceSet({APP: Action.ALL, APP + 1 + i: Action.READ})),
        lambda i: ValidityWindow(NOW - 3600 - i, NOW + 3600 + i),
        lambda i: Machines(ResourceSet({MACHINE: Action.ALL, f"m{i}": Action.READ})),
        lambda i: IfPresent((FeatureSet(ResourceSet({"wg": Action.ALL, f"f{i}": 1})),), Action.ALL),
    ]
    return [cycle[i % len(cycle)](i) for i in range(n)]


ACCESS = FlyAccess(org_id=ORG, app_id=APP, machine=MACHINE, action=Action.READ, at=NOW)

#: Tokens in each workload list ("shared", "unique").
WORKLOAD_SIZE = 1000


def unique_caveats(n: int, t: int) -> list[Caveat]:
    """Token *t*'s N caveats: the shapes of :func:`caveats`, with values of its own.

    App and Machine ids, window bounds and feature names differ from token
    to token; Organization masks (bits above the five actions) repeat every
    512 tokens. Each allows :data:`ACCESS`.
    """
    u = 10_000 + t * n
    cycle: list[Callable[[int], Caveat]] = [
        lambda i: Organization(ORG, Action.ALL | ((t * 4 + i // 5) % 2048) << 5),
        lambda i: Apps(ResourceSet({APP: Action.ALL, u + i: Action.READ})),
        lambda i: ValidityWindow(NOW - u - i, NOW + u + i),
        lambda i: Machines(ResourceSet({MACHINE: Action.ALL, f"m{t}.{i}": Action.READ})),
        lambda i: IfPresent(
            (FeatureSet(ResourceSet({"wg": Action.ALL, f"f{t}.{i}": Action.READ})),), Action.ALL
        ),
    ]
    return [cycle[i % len(cycle)](i) for i in range(n)]


def mint_token(cavs: list[Caveat]) -> bytes:
    """A token minted with :data:`KEY` holding *cavs*."""
    token = Macaroon.new(MemoryKeyring([KEY]).current().kid, LOCATION, KEY)
    token.add(*cavs)
    return token.encode()


def workload_tokens(n: int) -> dict[str, list[bytes]]:
    """The three workloads of N caveats (issue 18), as token bytes.

    "repeated": one token, :data:`WORKLOAD_SIZE` times; "shared": that many
    tokens with the same caveats and different nonces; "unique": that many
    tokens whose caveats' values differ token to token.
    """
    one = mint_token(caveats(n))
    return {
        "repeated": [one] * WORKLOAD_SIZE,
        "shared": [mint_token(caveats(n)) for _ in range(WORKLOAD_SIZE)],
        "unique": [mint_token(unique_caveats(n, t)) for t in range(WORKLOAD_SIZE)],
    }


def check_all(verifier: Verifier, headers: list[str], *, forget: bool) -> Callable[[], object]:
    """Full checks of every header in turn; *forget* empties the decode memo first.

    With *forget* every token of a pass is seen for the first time (its
    caveats are new), however large the memo: emptying it is part of the
    measured time, as its churn is part of a service's.
    """
    memo = DEFAULT_REGISTRY.memo

    def run() -> None:
        if forget:
            memo.clear()
        authorize = verifier.authorize
        for header in headers:
            authorize(header, ACCESS)

    return run


def floor_all(tokens: list[list[bytes]], macs: list[int]) -> Callable[[], object]:
    """The floor of each header of *tokens* (lists of token bytes), in turn.

    Each token costs one base64 decode, one ``msgpack.unpackb`` and one
    ``hmac.digest`` per step of its chain (*macs*, by position in the header).
    """
    texts = [[base64.b64encode(d).decode() for d in header] for header in tokens]
    steps = [range(m) for m in macs]

    def run() -> None:
        for header in texts:
            for text, chain in zip(header, steps, strict=True):
                msgpack.unpackb(base64.b64decode(text), strict_map_key=False)
                tag = KEY
                for _ in chain:
                    tag = hmac.digest(tag, b"x" * 16, "sha256")

    return run


def workloads(n: int) -> dict[str, Callable[[], object]]:
    """Full check and floor of each workload of N caveats, per pass over its list."""
    verifier = Verifier(MemoryKeyring([KEY]))
    fns: dict[str, Callable[[], object]] = {}
    lists = workload_tokens(n)
    for name, tokens in lists.items():
        headers = [to_header(d) for d in tokens]
        fns[f"{name} full check"] = check_all(verifier, headers, forget=name == "unique")
        fns[f"{name} floor"] = floor_all([[d] for d in tokens], [n + 1])
    fns["unique decode+verify+validate"] = decode_all(lists["unique"])
    return fns


def decode_all(tokens: list[bytes]) -> Callable[[], object]:
    """Decode, verify and validate each token, the memo emptied first (no header, no Verifier)."""
    memo = DEFAULT_REGISTRY.memo

    def run() -> None:
        memo.clear()
        decode = Macaroon.decode
        for data in tokens:
            decode(data).verify(KEY).validate(ACCESS)

    return run


def measure_all(fns: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Median microseconds per call of each function, measured in interleaved rounds.

    Each round runs a batch of about 10 ms of every function in turn, so a
    noisy spell on a shared machine slows them all alike and the ratios
    between them stay steady. Rounds go on for about *seconds* per function.
    """
    batches = {name: _batch_size(fn) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    gc.disable()
    try:
        deadline = time.perf_counter() + seconds * len(fns)
        while time.perf_counter() < deadline or len(samples[next(iter(fns))]) < 5:
            for name, fn in fns.items():
                batch = batches[name]
                t0 = time.perf_counter_ns()
                for _ in range(batch):
                    fn()
                samples[name].append((time.perf_counter_ns() - t0) / batch / 1000)
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def _batch_size(fn: Callable[[], object]) -> int:
    """How many calls of *fn* take about 10 ms."""
    fn()
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < 0.05:
        fn()
        calls += 1
    return max(1, int(0.01 / (0.05 / max(calls, 1))))


def ours(n: int) -> tuple[dict[str, Callable[[], object]], int]:
    """This library's operations and the floors for N caveats, and the token's size."""
    ring = MemoryKeyring([KEY])
    kid = ring.current().kid
    cavs = caveats(n)

    def mint() -> bytes:
        m = Macaroon.new(kid, LOCATION, KEY)
        m.add(*cavs)
        return m.encode()

    data = mint()
    header = to_header(data)
    verifier = Verifier(ring)
    cached = Verifier(ring, cache=VerificationCache())

    def cold() -> object:
        # Every caveat decoded afresh: what a token with new caveats costs.
        DEFAULT_REGISTRY.memo.clear()
        return verifier.authorize(header, ACCESS)

    return {
        "mint": mint,
        "decode": lambda: Macaroon.decode(data),
        "decode+verify": lambda: Macaroon.decode(data).verify(KEY),
        "decode+verify+validate": lambda: Macaroon.decode(data).verify(KEY).validate(ACCESS),
        "full check": lambda: verifier.authorize(header, ACCESS),
        "full check (cold)": cold,
        "cached full check": lambda: cached.authorize(header, ACCESS),
        "floor": floor(data, n, lambda k, m: hmac.digest(k, m, "sha256")),
        "floor, our HMAC": floor(data, n, crypto.mac),
    }, len(data)


def floor(data: bytes, n: int, mac: Callable[[bytes, bytes], bytes]) -> Callable[[], object]:
    text = base64.b64encode(data).decode()

    def run() -> None:
        raw = base64.b64decode(text)
        msgpack.unpackb(raw, strict_map_key=False)
        tag = KEY
        for _ in range(n + 1):
            tag = mac(tag, b"x" * 16)

    return run


def ours_third_party() -> dict[str, Callable[[], object]]:
    ring = MemoryKeyring([KEY])
    tp_key = new_encryption_key()
    root = Macaroon.new(ring.current().kid, LOCATION, KEY)
    root.add(Organization(ORG, Action.ALL))
    root.add_3p(tp_key, AUTH, ConfineOrganization(ORG))
    (ticket,) = root.third_party_tickets()[AUTH]
    _, discharge = discharge_ticket(tp_key, AUTH, ticket)
    discharge.add(ValidityWindow(NOW - 60, NOW + 300))
    discharge.bind(root)
    header = to_header(root, discharge)
    verifier = Verifier(ring, trusted_3ps={AUTH: [tp_key]})
    root_data, dis_data = parse_header(header)
    unique = [third_party_header(ring, tp_key, t) for t in range(WORKLOAD_SIZE)]
    return {
        "3p decode+verify": lambda: Macaroon.decode(root_data).verify(
            KEY, [Macaroon.decode(dis_data)]
        ),
        "3p full check": lambda: verifier.authorize(header, ACCESS),
        "3p unique full check": check_all(verifier, unique, forget=True),
        # Root: nonce, Organization, 3P; discharge: nonce, window, binding, finalization.
        "3p unique floor": floor_all([parse_header(h) for h in unique], [3, 4]),
    }


def third_party_header(ring: MemoryKeyring, tp_key: bytes, t: int) -> str:
    """Token *t* of the 3P workload: a root and its bound discharge, caveats of their own."""
    root = Macaroon.new(ring.current().kid, LOCATION, KEY)
    root.add(Organization(ORG, Action.ALL | (t % 2048) << 5))
    root.add_3p(tp_key, AUTH, ConfineOrganization(ORG))
    (ticket,) = root.third_party_tickets()[AUTH]
    _, discharge = discharge_ticket(tp_key, AUTH, ticket)
    discharge.add(ValidityWindow(NOW - 60 - t, NOW + 300 + t))
    discharge.bind(root)
    return to_header(root, discharge)


def pymacaroons_case(n: int) -> dict[str, Callable[[], object]]:
    try:
        import pymacaroons
    except ImportError:
        return {}
    predicates = [f"caveat{i} = value{i}" for i in range(n)]

    def mint() -> str:
        m = pymacaroons.Macaroon(
            location=LOCATION, identifier="kid-1", key=KEY, version=pymacaroons.MACAROON_V2
        )
        for p in predicates:
            m.add_first_party_caveat(p)
        return str(m.serialize())

    token = mint()

    def verify() -> None:
        v = pymacaroons.Verifier()
        for p in predicates:
            v.satisfy_exact(p)
        v.verify(pymacaroons.Macaroon.deserialize(token), KEY)

    return {"pymacaroons mint": mint, "pymacaroons deserialize+verify": verify}


def pymacaroons_third_party() -> dict[str, Callable[[], object]]:
    try:
        import pymacaroons
    except ImportError:
        return {}
    v2 = pymacaroons.MACAROON_V2
    root = pymacaroons.Macaroon(location=LOCATION, identifier="kid-1", key=KEY, version=v2)
    root.add_first_party_caveat("org = 1234")
    root.add_third_party_caveat(AUTH, "tp-secret", "ticket-1")
    discharge = pymacaroons.Macaroon(
        location=AUTH, identifier="ticket-1", key="tp-secret", version=v2
    )
    discharge.add_first_party_caveat("time < 2030")
    bound = root.prepare_for_request(discharge)
    root_s, dis_s = root.serialize(), bound.serialize()

    def verify() -> None:
        v = pymacaroons.Verifier()
        v.satisfy_exact("org = 1234")
        v.satisfy_exact("time < 2030")
        v.verify(
            pymacaroons.Macaroon.deserialize(root_s), KEY, [pymacaroons.Macaroon.deserialize(dis_s)]
        )

    return {"pymacaroons 3p": verify}


def scan_throughput(quick: bool) -> str:
    """The leak scanner's lines from benchmarks/scan.py (its own corpus and checks)."""
    script = Path(__file__).resolve().parent / "scan.py"
    size = "4" if quick else "32"
    done = subprocess.run(
        [sys.executable, str(script), "--size-mb", size, "--repeat", "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or done.stderr.strip()


#: The workload rows of the table: (key in :func:`workloads`, label).
WORKLOAD_ROWS = (
    ("repeated", f"full check, one token repeated ({WORKLOAD_SIZE:,} calls)"),
    ("shared", f"full check, shared caveats ({WORKLOAD_SIZE:,} tokens)"),
    ("unique", f"full check, unique caveats ({WORKLOAD_SIZE:,} tokens)"),
)


def targets(ratios: dict[tuple[int, str], float], shares: dict[int, float]) -> list[str]:
    """Each target of issue 18, with this run's figure and whether it held."""
    checks = [
        *((f"N={n} unique caveats <= 1.3x", ratios[n, "unique"], 1.3) for n in (5, 20)),
        *((f"N=1 {kind} <= 1.0x", ratios[1, kind], 1.0) for kind, _ in WORKLOAD_ROWS),
        *((f"N=5 {kind} <= 1.0x", ratios[5, kind], 1.0) for kind in ("repeated", "shared")),
        *((f"N=20 {kind} <= 0.8x", ratios[20, kind], 0.8) for kind in ("repeated", "shared")),
        *((f"N={n} cached / uncached <= 0.20", share, 0.2) for n, share in shares.items()),
    ]
    return [
        f"{name}: {value:.2f} {'held' if value <= limit else 'MISSED'}"
        for name, value, limit in checks
    ]


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="about 0.2 s per measurement")
    group.add_argument("--full", action="store_true", help="about 3 s per measurement")
    parser.add_argument("--no-scan", action="store_true", help="leave out the leak scanner")
    args = parser.parse_args(argv)
    seconds = 0.2 if args.quick else 3.0 if args.full else 1.0

    print(
        f"macaroons_authz {__version__}, Python {platform.python_version()}, "
        f"msgpack {msgpack.version}, {platform.machine()} {platform.processor() or ''}".rstrip()
    )
    print()
    print(
        "| N | operation | macaroons_authz µs | pymacaroons µs | floor µs "
        "| vs pymacaroons | vs floor |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    full: dict[int, float] = {}
    ratios: dict[tuple[int, str], float] = {}
    shares: dict[int, float] = {}
    for n in (1, 5, 20):
        fns, size = ours(n)
        o = measure_all({**fns, **pymacaroons_case(n), **workloads(n)}, seconds)
        peer_mint = o.get("pymacaroons mint")
        peer = o.get("pymacaroons deserialize+verify")
        full[n] = o["full check"]
        rows: list[tuple[str, float, float | None, float | None]] = [
            ("mint + encode", o["mint"], peer_mint, None),
            ("decode", o["decode"], None, None),
            ("decode + verify", o["decode+verify"], peer, o["floor"]),
            ("decode + verify + validate", o["decode+verify+validate"], None, o["floor"]),
            ("full check (header)", o["full check"], peer, o["floor"]),
            ("full check, caveats not memoized", o["full check (cold)"], peer, o["floor"]),
            (
                "full check vs a floor of crypto.mac calls",
                o["full check"],
                None,
                o["floor, our HMAC"],
            ),
            ("cached full check", o["cached full check"], None, None),
        ]
        for kind, label in WORKLOAD_ROWS:
            per_pass = o[f"{kind} full check"]
            ratios[n, kind] = per_pass / o[f"{kind} floor"]
            rows.append((label, per_pass / WORKLOAD_SIZE, peer, o[f"{kind} floor"] / WORKLOAD_SIZE))
        per_pass = o["unique decode+verify+validate"]
        label = "decode + verify + validate, unique caveats"
        rows.append((label, per_pass / WORKLOAD_SIZE, None, o["unique floor"] / WORKLOAD_SIZE))
        for name, mine, other, fl in rows:
            ratio_peer = f"{other / mine:.1f}x faster" if other else ""
            ratio_floor = f"{mine / fl:.2f}x" if fl else ""
            cells = [str(n), name, f"{mine:.1f}", fmt(other), fmt(fl), ratio_peer, ratio_floor]
            print("| " + " | ".join(cells) + " |")
        print(f"| {n} | (token size, bytes) | {size} | | | | |")
        shares[n] = o["cached full check"] / o["full check"]
        print(f"| {n} | cached / uncached full check | {shares[n]:.2f} | | | | |")
    tp = measure_all({**ours_third_party(), **pymacaroons_third_party()}, seconds)
    ptp = tp.get("pymacaroons 3p")
    ratio = f"{ptp / tp['3p decode+verify']:.1f}x faster" if ptp else ""
    print(
        f"| 3P | decode + verify (root + bound discharge) | {tp['3p decode+verify']:.1f} | "
        f"{fmt(ptp)} | | {ratio} | |"
    )
    print(f"| 3P | full check (header) | {tp['3p full check']:.1f} | | | | |")
    mine, fl = tp["3p unique full check"], tp["3p unique floor"]
    print(
        f"| 3P | full check, unique caveats ({WORKLOAD_SIZE:,} headers) | "
        f"{mine / WORKLOAD_SIZE:.1f} | | {fl / WORKLOAD_SIZE:.1f} | | {mine / fl:.2f}x |"
    )
    print()
    print(f"Cost per added caveat (full check, N=5 to N=20): {(full[20] - full[5]) / 15:.2f} µs")
    print()
    print("Targets (issue 18), ratios to the floor of this run:")
    for line in targets(ratios, shares):
        print(f"- {line}")
    if not args.no_scan:
        print()
        print("Leak scanner (benchmarks/scan.py):")
        print(scan_throughput(args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
