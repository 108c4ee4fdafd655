"""Shared fixtures: the vectors in ../shared and a deterministic random source."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from macaroons_authz import crypto

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
SPEC_VECTORS = SHARED / "spec" / "fly-macaroon-vectors.json"
OFFICIAL_VECTORS = SHARED / "vectors" / "superfly-macaroon-vectors.json"


def _load(path: Path) -> Any:
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing; under CI the shared vectors must be present")
        pytest.skip(f"{path} not found: the shared vectors live beside the project checkout")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def spec_vectors() -> Any:
    """``../shared/spec/fly-macaroon-vectors.json``."""
    return _load(SPEC_VECTORS)


@pytest.fixture(scope="session")
def official_vectors() -> Any:
    """``../shared/vectors/superfly-macaroon-vectors.json``."""
    return _load(OFFICIAL_VECTORS)


class CounterRandom:
    """Go's deterministic test RNG: a byte counter starting at a given value."""

    def __init__(self, start: int) -> None:
        self.next = start

    def __call__(self, n: int) -> bytes:
        out = bytes((self.next + i) & 0xFF for i in range(n))
        self.next += n
        return out


@pytest.fixture
def counter_random(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], CounterRandom]]:
    """Replace :func:`crypto.random_bytes` with a counter starting where asked."""

    def install(start: int) -> CounterRandom:
        rng = CounterRandom(start)
        monkeypatch.setattr(crypto, "random_bytes", rng)
        return rng

    return install
