"""One behavioural suite for every flow store of the discharge service: memory, SQLite, PostgreSQL.

Each fixture opens *views* on one store: for memory the same object, for
SQLite another handle on the same file, for PostgreSQL another pool on the
same schema, so that what two workers share is tested where a store can be
shared. Then the service itself, on each store: two services on two views
(two workers) finish each other's flows, secrets never reach the store, and
a store that cannot be read fails closed.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from macaroons_authz import (
    Approve,
    Defer,
    DischargeService,
    FlowNotFoundError,
    Macaroon,
    PendingFlow,
    StoreError,
    new_encryption_key,
)
from macaroons_authz.stores.flows import (
    NOT_READY,
    FlowRecord,
    FlowResult,
    FlowStore,
    FlowStoreFullError,
    MemoryFlowStore,
    SQLiteFlowStore,
)
from macaroons_authz.thirdparty import INIT_PATH, POLL_PATH

KINDS = ["memory", "sqlite", "postgres"]
NOW = 1_767_225_600.0
LOCATION = "https://auth.example"

Opener = Callable[[], Any]


@pytest.fixture(params=KINDS)
def open_flows(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens views on one flow store of the parametrized kind."""
    opened: list[Any] = []
    if request.param == "memory":
        store = MemoryFlowStore()

        def opener() -> Any:
            return store

    elif request.param == "sqlite":

        def opener() -> Any:
            view = SQLiteFlowStore(tmp_path / "flows.db")
            opened.append(view)
            return view

    else:
        from macaroons_authz.stores.postgres_flows import PostgresFlowStore

        pg = request.getfixturevalue("pg")

        def open_pg() -> Any:
            view = PostgresFlowStore(pg.url, schema=pg.schema, timeout=5.0)
            pg.later(view.close)
            return view

        open_pg().migrate()  # once, as a deployment would
        opener = open_pg

    yield opener
    for view in opened:
        view.close()


def record(n: int, *, expires_at: float = NOW + 600, interactive: bool = False) -> FlowRecord:
    return FlowRecord(
        f"{n:064x}", f"{n + 10_000:064x}", bytes([n % 256]) * 40, f"10.0.0.{n % 250}", interactive,
        expires_at,
    )  # fmt: skip


DONE = FlowResult(200, {"discharge": "fm2_lQ"})


def in_threads(fn: Callable[[int], Any], n: int) -> list[Any]:
    """Run fn(0..n-1) in n threads started together; their results (or the first error)."""
    results: list[Any] = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# -- the store contract -------------------------------------------------------------


def test_every_store_implements_the_protocol(open_flows: Opener) -> None:
    assert isinstance(open_flows(), FlowStore)


def test_a_flow_is_pending_then_finished_once_then_taken_once(open_flows: Opener) -> None:
    store, other = open_flows(), open_flows()
    flow = record(1, interactive=True)
    store.create(flow, now=NOW, limit=10)
    assert other.pending(flow.user_key, now=NOW) == flow
    assert other.take(flow.poll_key, now=NOW) is NOT_READY
    assert (NOT_READY.status, NOT_READY.body) == (202, {"error": "not ready"})
    assert other.finish(flow.user_key, DONE, now=NOW + 1, expires_at=NOW + 601)
    # The user key is spent: not pending, and not finished twice.
    assert store.pending(flow.user_key, now=NOW + 1) is None
    assert not store.finish(flow.user_key, FlowResult(200, {"error": "x"}), now=NOW + 1,
                            expires_at=NOW + 601)  # fmt: skip
    # The poll key is not a user key, nor the other way round.
    assert store.pending(flow.poll_key, now=NOW + 1) is None
    assert store.take(flow.user_key, now=NOW + 1) is None
    assert store.take(flow.poll_key, now=NOW + 2) == DONE
    assert other.take(flow.poll_key, now=NOW + 2) is None
    assert store.take(flow.poll_key, now=NOW + 2) is None


def test_unknown_keys_find_nothing(open_flows: Opener) -> None:
    store = open_flows()
    assert store.pending("0" * 64, now=NOW) is None
    assert store.take("0" * 64, now=NOW) is None
    assert not store.finish("0" * 64, DONE, now=NOW, expires_at=NOW + 1)


def test_flows_and_results_expire(open_flows: Opener) -> None:
    store, other = open_flows(), open_flows()
    a, b = record(1, expires_at=NOW + 60), record(2, expires_at=NOW + 60)
    store.create(a, now=NOW, limit=10)
    store.create(b, now=NOW, limit=10)
    # Live up to and including expires_at, gone after.
    assert other.pending(a.user_key, now=NOW + 60) == a
    assert other.pending(a.user_key, now=NOW + 60.5) is None
    assert other.take(a.poll_key, now=NOW + 61) is None
    assert not other.finish(a.user_key, DONE, now=NOW + 61, expires_at=NOW + 661)
    # A finished flow's result lives until the expiry given with it.
    assert other.finish(b.user_key, DONE, now=NOW + 59, expires_at=NOW + 100)
    assert store.take(b.poll_key, now=NOW + 100.5) is None
    c = record(3, expires_at=NOW + 60)
    store.create(c, now=NOW, limit=10)
    assert store.finish(c.user_key, DONE, now=NOW + 59, expires_at=NOW + 100)
    assert other.take(c.poll_key, now=NOW + 100) == DONE


def test_the_bound_refuses_new_flows_and_never_evicts_a_live_one(open_flows: Opener) -> None:
    store, other = open_flows(), open_flows()
    first, second = record(1, expires_at=NOW + 60), record(2, expires_at=NOW + 70)
    store.create(first, now=NOW, limit=2)
    other.create(second, now=NOW + 5, limit=2)
    for n in range(3, 30):
        with pytest.raises(FlowStoreFullError) as info:
            (store if n % 2 else other).create(record(n), now=NOW + 10, limit=2)
        assert info.value.retry_after == 50  # until the oldest live flow expires
    assert str(info.value) == "too many pending flows"
    assert store.pending(first.user_key, now=NOW + 10) == first
    assert other.pending(second.user_key, now=NOW + 10) == second
    # A finished flow still holds its place until its result is taken or expires.
    assert store.finish(first.user_key, DONE, now=NOW + 10, expires_at=NOW + 80)
    with pytest.raises(FlowStoreFullError) as info:
        store.create(record(40), now=NOW + 10, limit=2)
    assert info.value.retry_after == 60
    assert other.take(first.poll_key, now=NOW + 11) == DONE
    store.create(record(41), now=NOW + 11, limit=2)
    # Expired flows make room, and are gone; less than a second left still says 1.
    with pytest.raises(FlowStoreFullError) as info:
        store.create(record(42), now=NOW + 69.5, limit=2)
    assert info.value.retry_after == 1
    store.create(record(43), now=NOW + 71, limit=2)
    assert other.take(second.poll_key, now=NOW + 71) is None


def test_two_workers_polling_at_once_get_the_result_exactly_once(open_flows: Opener) -> None:
    views = [open_flows() for _ in range(6)]
    flows = [record(n) for n in range(1, 11)]
    for flow in flows:
        views[0].create(flow, now=NOW, limit=100)
        assert views[1].finish(flow.user_key, DONE, now=NOW, expires_at=NOW + 600)
    for flow in flows:
        got = in_threads(lambda i, f=flow: views[i].take(f.poll_key, now=NOW + 1), len(views))
        assert sorted(map(repr, got)) == sorted([repr(DONE)] + ["None"] * (len(views) - 1))


def test_two_workers_finishing_at_once_finish_once(open_flows: Opener) -> None:
    views = [open_flows() for _ in range(6)]
    for n in range(1, 6):
        flow = record(n)
        views[0].create(flow, now=NOW, limit=100)
        results = [FlowResult(200, {"discharge": f"fm2_{i}"}) for i in range(len(views))]
        won = in_threads(
            lambda i, f=flow, r=results: views[i].finish(
                f.user_key, r[i], now=NOW, expires_at=NOW + 9
            ),
            len(views),
        )
        assert won.count(True) == 1
        assert views[0].take(flow.poll_key, now=NOW) == results[won.index(True)]


def test_concurrent_creators_never_exceed_the_bound(open_flows: Opener) -> None:
    views = [open_flows() for _ in range(8)]

    def create(i: int) -> bool:
        try:
            views[i].create(record(100 + i), now=NOW, limit=5)
        except FlowStoreFullError:
            return False
        return True

    assert in_threads(create, len(views)).count(True) == 5
    live = [views[0].pending(record(100 + i).user_key, now=NOW) for i in range(8)]
    assert len([r for r in live if r is not None]) == 5


def test_records_hide_the_ticket_from_repr() -> None:
    flow = record(7)
    assert "ticket" not in repr(flow) and repr(flow.ticket) not in repr(flow)
    assert "fm2_lQ" not in repr(DONE)


# -- the service on each store -------------------------------------------------------


def call(app: DischargeService, method: str, path: str, body: bytes = b"") -> tuple[int, Any, Any]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.9",
        "wsgi.input": io.BytesIO(body),
    }
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    data = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], json.loads(data)


def ticket_body(tp_key: bytes) -> bytes:
    token = Macaroon.new(b"kid", "https://api.example", bytes(32))
    token.add_3p(tp_key, LOCATION)
    ((ticket,),) = token.third_party_tickets().values()
    return json.dumps({"ticket": base64.b64encode(ticket).decode()}).encode()


def test_two_services_on_one_store_finish_each_others_flows(open_flows: Opener) -> None:
    tp_key = new_encryption_key()
    flows: list[PendingFlow] = []
    now = [NOW]

    def worker() -> DischargeService:
        return DischargeService(
            LOCATION,
            tp_key,
            lambda r: Defer(interactive=True),
            on_deferred=flows.append,
            flows=open_flows(),
            clock=lambda: now[0],
        )

    a, b = worker(), worker()
    status, _, doc = call(a, "POST", INIT_PATH, ticket_body(tp_key))
    assert status == 201
    poll = doc["user_interactive"]["poll_url"].removeprefix(LOCATION)
    user_secret = doc["user_interactive"]["user_url"].rsplit("/", 1)[1]
    assert flows[0].user_secret == user_secret
    assert call(b, "GET", poll)[::2] == (202, {"error": "not ready"})
    # Worker b finds the flow a started, as the application sees it.
    found = b.flow(user_secret)
    assert (found.user_url, found.interactive) == (flows[0].user_url, True)
    assert found.request.caveats == flows[0].request.caveats
    assert (found.request.remote_addr, found.request.ticket_id) == (
        "127.0.0.9",
        flows[0].request.ticket_id,
    )
    # Headers carry credentials: on_deferred had them, the store keeps none.
    assert flows[0].request.headers["content-type"] == "application/json"
    assert found.request.headers == {}
    now[0] += 5
    b.complete(user_secret, Approve())
    with pytest.raises(FlowNotFoundError):
        a.complete(user_secret, Approve())
    status, _, doc = call(a, "GET", poll)
    assert status == 200 and doc["discharge"].startswith("fm2_")
    assert call(b, "GET", poll)[::2] == (404, {"error": "not found"})


def test_secrets_never_reach_a_store(tmp_path: Path) -> None:
    tp_key = new_encryption_key()
    flows: list[PendingFlow] = []
    path = tmp_path / "flows.db"
    with SQLiteFlowStore(path) as store:
        service = DischargeService(
            LOCATION, tp_key, lambda r: Defer(), on_deferred=flows.append, flows=store,
            clock=lambda: NOW,
        )  # fmt: skip
        doc = call(service, "POST", INIT_PATH, ticket_body(tp_key))[2]
        poll_secret = doc["poll_url"].rsplit("/", 1)[1]
        user_secret = flows[0].user_secret
        data = b"".join(p.read_bytes() for p in tmp_path.glob("flows.db*"))
        assert user_secret.encode() not in data and poll_secret.encode() not in data
        assert repr(store) == f"<SQLiteFlowStore {str(path)!r}>"
        assert user_secret not in repr(service) and poll_secret not in repr(service)


def test_an_unreadable_store_fails_closed_with_503(tmp_path: Path) -> None:
    tp_key = new_encryption_key()
    path = tmp_path / "flows.db"
    store = SQLiteFlowStore(path)
    service = DischargeService(LOCATION, tp_key, lambda r: Defer(), flows=store, clock=lambda: NOW)
    poll = call(service, "POST", INIT_PATH, ticket_body(tp_key))[2]["poll_url"]
    store.close()  # every later use of the store is a StoreError
    with pytest.raises(StoreError):
        store.take("0" * 64, now=NOW)
    for method, target, body in [
        ("POST", INIT_PATH, ticket_body(tp_key)),
        ("GET", poll.removeprefix(LOCATION), b""),
    ]:
        status, headers, doc = call(service, method, target, body)
        assert (status, headers["Retry-After"], doc) == (503, "5", {"error": "service unavailable"})
    with pytest.raises(StoreError):
        service.complete("0" * 32, Approve())
    assert POLL_PATH in poll


def test_the_postgres_store_needs_its_migration(pg: Any) -> None:
    from macaroons_authz.stores import SchemaError
    from macaroons_authz.stores.postgres_flows import PostgresFlowStore

    store = PostgresFlowStore(pg.url, schema=pg.schema, timeout=5.0)
    pg.later(store.close)
    assert store.schema_version() == 0
    with pytest.raises(SchemaError, match="migrate"):
        store.pending("0" * 64, now=NOW)
    assert store.migrate() == 1 == store.schema_version()
    assert repr(store) == f"<PostgresFlowStore schema={pg.schema!r}>"
