"""The decision core: exact outcomes, the decision log, secrets, threads."""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from pathlib import Path

import pytest
from web_app import AT, ORG
from web_helpers import (
    UNAUTHENTICATED_BODY,
    Tokens,
    broken_revocations,
    forbidden_body,
    memory_tokens,
    problem_headers,
)

from macaroons_authz import (
    Action,
    FlyAccess,
    MemoryRevocationStore,
    VerificationCache,
    Verifier,
)
from macaroons_authz.web import LOGGER_NAME, Authorized, DecisionRecord, Denial, Gate

READ_42 = FlyAccess(org_id=ORG, app_id=42, action=Action.READ, at=AT)
DELETE_42 = FlyAccess(org_id=ORG, app_id=42, action=Action.DELETE, at=AT)
READ_43 = FlyAccess(org_id=ORG, app_id=43, action=Action.READ, at=AT)
# Machine and app feature together: the access itself is malformed.
BAD_ACCESS = FlyAccess(org_id=ORG, app_id=42, machine="ab12", app_feature="wg", at=AT)


class World:
    def __init__(self, *, cache: bool = False) -> None:
        self.ring, self.tokens = memory_tokens()
        self.revocations = MemoryRevocationStore()
        self.revocations.revoke(str(self.tokens.tokens[3].nonce.uuid))
        self.records: list[DecisionRecord] = []
        self.verifier = Verifier(
            self.ring,
            revocations=self.revocations,
            cache=VerificationCache() if cache else None,
        )
        self.gate = Gate(self.verifier, log=self.records.append, timer=lambda: 0.0)


@pytest.fixture
def world() -> World:
    return World()


def token_id(tokens: Tokens, index: int) -> str:
    return str(tokens.tokens[index].nonce.uuid)


# -- the table of outcomes ----------------------------------------------------------


def unauthenticated_cases(t: Tokens) -> list[tuple[str, tuple[str, ...]]]:
    return [
        ("no header", ()),
        ("two headers", (t.reader, t.reader)),
        ("empty header", ("",)),
        ("scheme alone", ("FlyV1",)),
        ("not a token", ("FlyV1 fm2_bm90IGEgdG9rZW4=",)),
        ("another scheme", ("Basic dXNlcjpwYXNzd29yZA==",)),
        ("token pieces with spaces", (t.reader.replace(",", ", ") + ", " + t.admin[6:],)),
        ("forged with the right KID", (t.forged,)),
        ("unknown KID", (t.unknown_kid,)),
        ("revoked", (t.revoked,)),
    ]


@pytest.mark.parametrize("index", range(10))
def test_every_unauthenticated_request_gets_the_same_bare_401(world: World, index: int) -> None:
    label, headers = unauthenticated_cases(world.tokens)[index]
    denial = world.gate.decide(headers, READ_42)
    assert type(denial) is Denial, label
    assert denial.status == 401
    assert json.loads(denial.body) == UNAUTHENTICATED_BODY
    assert denial.headers == problem_headers(denial.body, ("WWW-Authenticate", "FlyV1"))
    assert denial.failed == ()
    # No oracle: every 401 is the same response, byte for byte.
    assert denial == world.gate.decide((), READ_42)


@pytest.mark.parametrize(
    ("header", "access", "failed"),
    [
        ("reader", DELETE_42, ("Action", "Apps")),
        ("reader", READ_43, ("Apps",)),
        ("expired", READ_42, ("ValidityWindow",)),
        ("admin", BAD_ACCESS, ("ResourcesMutuallyExclusiveError",)),
    ],
)
def test_authentic_token_that_forbids_the_access_gets_403_naming_caveat_kinds(
    world: World, header: str, access: FlyAccess, failed: tuple[str, ...]
) -> None:
    denial = world.gate.decide((getattr(world.tokens, header),), access)
    assert type(denial) is Denial
    assert denial.status == 403
    assert json.loads(denial.body) == forbidden_body(*failed)
    assert denial.headers == problem_headers(denial.body)
    assert denial.failed == failed


@pytest.mark.parametrize(
    "scheme", ["FlyV1 ", "Bearer ", "flyv1 ", "bearer ", "FlyV1 Bearer ", ""], ids=repr
)
def test_allowed_with_either_scheme(world: World, scheme: str) -> None:
    header = scheme + world.tokens.reader.removeprefix("FlyV1 ")
    result = world.gate.decide((header,), READ_42)
    assert result == Authorized(world.verifier.verify(header), token_id(world.tokens, 0))
    assert type(result) is Authorized
    assert [type(c).__name__ for c in result.caveats] == [
        "Organization",
        "ActionCaveat",
        "Apps",
        "ValidityWindow",
    ]


def test_no_access_needed_means_no_decision_and_no_log(world: World) -> None:
    assert world.gate.decide((), None) is None
    assert world.gate.decide(("FlyV1 garbage",), None) is None
    assert world.records == []


def test_store_outage_fails_closed_with_503(tmp_path: Path) -> None:
    ring, tokens = memory_tokens()
    records: list[DecisionRecord] = []
    verifier = Verifier(ring, revocations=broken_revocations(tmp_path))
    gate = Gate(verifier, log=records.append, retry_after=7)
    denial = gate.decide((tokens.admin,), READ_42)
    assert type(denial) is Denial
    assert denial.status == 503
    assert json.loads(denial.body) == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "Authorization is unavailable; try again later.",
    }
    assert denial.headers == problem_headers(denial.body, ("Retry-After", "7"))
    assert b"database" not in denial.body
    assert [(r.allowed, r.status, r.token_id) for r in records] == [
        (False, 503, token_id(tokens, 1))
    ]


@pytest.mark.parametrize("retry_after", [-1, 2.5, "5", True, None])
def test_retry_after_is_whole_seconds_or_refused(retry_after: object) -> None:
    # Retry-After is delay-seconds (RFC 9110, 10.2.3): "-1" or "2.5" would
    # be a header no client can read, sent on every outage.
    ring, _ = memory_tokens()
    with pytest.raises(ValueError, match="retry_after must be whole seconds"):
        Gate(Verifier(ring), retry_after=retry_after)  # type: ignore[arg-type]
    assert Gate(Verifier(ring), retry_after=0)._unavailable.headers[-1] == ("Retry-After", "0")


def test_errors_that_are_not_decisions_propagate(world: World) -> None:
    # A bug (here: an access that is not an Access) is not dressed as a
    # decision; the server answers 500 and the application never runs.
    with pytest.raises(AttributeError):
        world.gate.decide((world.tokens.admin,), object())  # type: ignore[arg-type]


# -- the decision log ---------------------------------------------------------------


def test_log_records_each_decision(world: World) -> None:
    t = world.tokens
    world.gate.decide((t.reader,), READ_42)
    world.gate.decide((t.reader,), DELETE_42)
    world.gate.decide((t.forged,), READ_42)
    world.gate.decide(("FlyV1 fm2_bm90IGEgdG9rZW4=",), READ_42)
    world.gate.decide((t.revoked,), READ_42)
    world.gate.decide((), READ_42)
    kid = t.key.kid.hex()
    forged_kid = t.tokens[4].nonce.kid
    assert forged_kid is not None
    assert [
        (r.allowed, r.status, r.token_id, r.kid, r.access, r.failed, r.latency)
        for r in world.records
    ] == [
        (True, 200, token_id(t, 0), kid, READ_42, (), 0.0),
        (False, 403, token_id(t, 0), kid, DELETE_42, ("Action", "Apps"), 0.0),
        # A 401's id is the one the token claims: the forger's id, our KID.
        (False, 401, token_id(t, 4), forged_kid.hex(), READ_42, (), 0.0),
        (False, 401, None, None, READ_42, (), 0.0),
        (False, 401, token_id(t, 3), kid, READ_42, (), 0.0),
        (False, 401, None, None, READ_42, (), 0.0),
    ]


def test_default_log_is_one_info_line_on_the_named_logger(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = iter([10.0, 10.0125])
    gate = Gate(world.verifier, timer=lambda: next(ticks))
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        gate.decide((world.tokens.reader,), DELETE_42)
    [record] = caplog.records
    assert (record.name, record.levelno) == ("macaroons_authz.web", logging.INFO)
    assert record.getMessage() == (
        f"denied status=403 token_id={token_id(world.tokens, 0)} "
        f"kid={world.tokens.key.kid.hex()} "
        'access={"action":"d","orgid":1234,"appid":42} failed=Action,Apps latency_ms=12.500'
    )
    assert record.decision.failed == ("Action", "Apps")  # type: ignore[attr-defined]


def test_default_log_costs_nothing_when_info_is_off(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    class NoJSON(FlyAccess):
        def to_json(self) -> str:
            raise AssertionError("formatted although nothing logs")

    gate = Gate(world.verifier)
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        assert type(gate.decide((world.tokens.admin,), NoJSON(org_id=ORG, at=AT))) is Authorized
    assert caplog.records == []


def test_no_secret_reaches_the_log(world: World, caplog: pytest.LogCaptureFixture) -> None:
    t = world.tokens
    gate = Gate(world.verifier)
    with caplog.at_level(logging.DEBUG):
        for _, headers in unauthenticated_cases(t):
            gate.decide(headers, READ_42)
        for header in (t.reader, t.admin, t.expired):
            for access in (READ_42, DELETE_42, READ_43, BAD_ACCESS):
                gate.decide((header,), access)
    text = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert len(caplog.records) == 10 + 12
    for secret in t.secrets:
        assert secret not in text


# -- threads ------------------------------------------------------------------------


def test_one_gate_shared_by_16_threads_decides_as_one_thread() -> None:
    world = World(cache=True)
    t = world.tokens
    gate = Gate(world.verifier, log=None)
    requests = [
        (headers, access)
        for headers in [
            (t.reader,),
            (t.admin,),
            (t.expired,),
            (t.revoked,),
            (t.forged,),
            (t.unknown_kid,),
            ("FlyV1 Bearer " + t.reader.removeprefix("FlyV1 "),),
            (),
        ]
        for access in (READ_42, DELETE_42, READ_43)
    ]
    expected = [gate.decide(h, a) for h, a in requests]
    assert {type(r).__name__ for r in expected} == {"Authorized", "Denial"}
    rounds = 261  # 16 threads x 6,264 decisions: 100,224 in all
    errors: list[BaseException] = []
    mismatches: list[int] = []
    start = threading.Barrier(16)

    def work(offset: int) -> None:
        try:
            start.wait()
            for n in range(rounds * len(requests)):
                i = (n + offset) % len(requests)
                if gate.decide(*requests[i]) != expected[i]:
                    mismatches.append(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert mismatches == []
    assert world.verifier.cache is not None and world.verifier.cache.hits > 0


def test_gate_repr_names_no_secret(world: World) -> None:
    assert repr(world.gate).startswith("<Gate <Verifier location=")
    for secret in world.tokens.secrets:
        assert secret not in repr(world.gate)


# -- the benchmark -------------------------------------------------------------------


def test_every_benchmarked_web_operation_runs_and_allows() -> None:
    # Speed is reported by `python benchmarks/web.py`, never asserted here.
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "web.py"
    spec = importlib.util.spec_from_file_location("benchmark_web", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for cache in (True, False):
        fns, recorder = bench.operations(cache)
        assert {"authorize", "WSGI middleware", "ASGI middleware"} <= set(fns)
        try:
            for name, fn in fns.items():
                recorder.status = None
                fn()
                if name != "authorize":  # authorize raises unless it allows
                    assert recorder.status in ("200 OK", 200), name
        finally:
            recorder.close()
