"""The discharge service across workers: 4 gunicorn workers (and uvicorn) on one flow store.

Each server is started by the test on a socket it bound to 127.0.0.1 (handed
over as a file descriptor, as in test_web_servers.py), serving
``discharge_app`` with the flows in a SQLite file or, under CI, in
PostgreSQL. gunicorn runs with ``--max-requests 1``: each worker answers one
request and is replaced, so every request of a flow reaches another process
than the one before, and whatever a worker kept in memory is gone. A real
:class:`DischargeClient` then runs the poll flow and the user-interactive
flow over 127.0.0.1; the answering processes are read from the
``X-Worker-Pid`` header that only the test application sends. With flows in
memory the same run fails (the control), which shows the test can fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from test_web_servers import _gunicorn_options, _stop, _wait_ready

from macaroons_authz import (
    Action,
    Bundle,
    ConfineOrganization,
    DischargeClient,
    DischargeError,
    FlyAccess,
    FlyioUserID,
    MemoryKeyring,
    Verifier,
    new_encryption_key,
    org_token,
    to_header,
)
from macaroons_authz.thirdparty._http import build_opener
from macaroons_authz.thirdparty.client import _NoRedirects
from macaroons_authz.verifier import FLY_PERMISSION_LOCATION

TESTS = Path(__file__).resolve().parent
ORG = 1234


@attrs.define
class Running:
    location: str
    tp_key: bytes
    pending: Path
    log: Path
    port: int


class Pids(urllib.request.BaseHandler):
    """Records the ``X-Worker-Pid`` of every response the client gets."""

    handler_order = 100  # before HTTPErrorProcessor turns a 404 into an exception

    def __init__(self) -> None:
        self.seen: list[str] = []

    def http_response(self, request: Any, response: Any) -> Any:
        self.seen.append(response.headers.get("X-Worker-Pid", "none"))
        return response


def _command(kind: str, fd: int) -> list[str]:
    if kind == "gunicorn":
        return [
            *(sys.executable, "-m", "gunicorn", "--workers", "4", "--max-requests", "1"),
            *("--bind", f"fd://{fd}", "--chdir", str(TESTS), "--graceful-timeout", "5"),
            *_gunicorn_options(),
            "discharge_app:wsgi_app()",
        ]
    return [
        *(sys.executable, "-m", "uvicorn", "--fd", str(fd), "--app-dir", str(TESTS)),
        *("--factory", "--no-access-log", "discharge_app:asgi_app"),
    ]


@contextlib.contextmanager
def serve(
    kind: str, tmp_path: Path, flows: str, *, tp_key: bytes, location: str | None = None
) -> Iterator[Running]:
    """Run ``discharge_app`` under *kind* with the flow store *flows*; stop it and check its log."""
    pending = tmp_path / "pending"
    pending.mkdir(parents=True)
    log = tmp_path / f"{kind}.log"
    with socket.socket() as listener, log.open("wb") as out:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        where = location or f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DISCHARGE_LOCATION": where,
            "DISCHARGE_KEY": tp_key.hex(),
            "DISCHARGE_FLOWS": flows,
            "DISCHARGE_PENDING": str(pending),
        }
        process = subprocess.Popen(
            _command(kind, listener.fileno()),
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            start_new_session=True,
        )
    try:
        _wait_ready(process, port, log)
        yield Running(where, tp_key, pending, log, port)
    finally:
        _stop(process)
    text = log.read_text()
    assert "Traceback" not in text, text
    for secret in [p.read_text() for p in pending.iterdir()] + [tp_key.hex()]:
        assert secret not in text


@pytest.fixture(params=["sqlite", "postgres"])
def flows(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The flow store the workers share, as ``discharge_app`` reads it."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'flows.db'}"
    from macaroons_authz.stores.postgres_flows import PostgresFlowStore

    pg = request.getfixturevalue("pg")
    store = PostgresFlowStore(pg.url, schema=pg.schema, timeout=5.0)
    store.migrate()  # the deployment step
    store.close()
    return f"postgres:{pg.schema}:{pg.url}"


# -- the first party and its client ----------------------------------------------------


@attrs.define
class FirstParty:
    location: str
    tp_key: bytes
    ring: MemoryKeyring = attrs.field(factory=MemoryKeyring)

    def __attrs_post_init__(self) -> None:
        self.ring.generate()

    def bundle(self) -> tuple[Bundle, str]:
        """A header needing a discharge for members of ORG; its ticket's id."""
        token = org_token(self.ring.current(), ORG, expires_in=3600)
        token.add_3p(self.tp_key, self.location, ConfineOrganization(ORG))
        bundle = Bundle.parse(to_header(token), FLY_PERMISSION_LOCATION)
        ((ticket,),) = bundle.undischarged_tickets().values()
        return bundle, hashlib.blake2b(ticket, digest_size=32).hexdigest()

    def authorize(self, bundle: Bundle) -> list[int]:
        """The Fly.io user ids the discharged header is allowed for."""
        verifier = Verifier(self.ring, trusted_3ps={self.location: [self.tp_key]})
        access = FlyAccess(org_id=ORG, app_id=42, action=Action.READ, at=time.time())
        return [c.id for c in verifier.authorize(bundle.header(), access).of_type(FlyioUserID)]


def client(location: str, pids: Pids, **kw: Any) -> DischargeClient:
    return DischargeClient(
        [location],
        opener=build_opener(_NoRedirects, pids),
        backoff=0.05,
        max_backoff=0.2,
        # Generous: with --max-requests 1 every request waits for a worker to
        # boot, which takes seconds on a loaded 2-core machine.
        timeout=180,
        request_timeout=60,
        **kw,
    )


def post(
    port: int, path: str, body: str = "", headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    """Status, headers and body of one POST to 127.0.0.1:*port*."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def completer(port: int, ticket_id: str, pids: list[str]) -> Callable[[float], None]:
    """The client's sleep: the first time, the application finishes the flow (on any worker)."""
    done: list[bool] = []

    def sleep(seconds: float) -> None:
        if not done:
            status, headers, body = post(port, f"/test/complete/{ticket_id}")
            assert status == 204, body
            pids.append(headers["X-Worker-Pid"])
            done.append(True)
        time.sleep(seconds)

    return sleep


def approver(pids: list[str]) -> Callable[[str], None]:
    """A browser's part, over plain HTTP: open the user page, then press Approve."""

    def open_user_url(url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        try:
            conn.request("GET", parts.path, headers={"Cookie": "session=ada"})
            resp = conn.getresponse()
            page = resp.read().decode()
        finally:
            conn.close()
        assert resp.status == 200, page
        pids.append(resp.headers["X-Worker-Pid"])
        nonce = re.fullmatch(r"macaroons_authz_flow=([0-9a-f]{32}); .*", resp.headers["Set-Cookie"])
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
        assert nonce and csrf, page
        origin = f"{parts.scheme}://{parts.netloc}"
        status, headers, body = post(
            parts.port or 80,
            parts.path,
            urllib.parse.urlencode({"csrf": csrf[1], "decision": "approve"}),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"session=ada; macaroons_authz_flow={nonce[1]}",
                "Origin": origin,
            },
        )
        assert (status, b"<h1>Approved</h1>" in body) == (200, True), body
        pids.append(headers["X-Worker-Pid"])

    return open_user_url


# -- the tests ---------------------------------------------------------------------------


def test_poll_and_user_flows_complete_whichever_of_4_workers_answers(
    flows: str, tmp_path: Path
) -> None:
    with serve("gunicorn", tmp_path, flows, tp_key=new_encryption_key()) as srv:
        party = FirstParty(srv.location, srv.tp_key)
        # The poll flow: init, polls, and the application's completion, each
        # on whichever worker takes it.
        pids = Pids()
        bundle, ticket_id = party.bundle()
        sleep = completer(srv.port, ticket_id, pids.seen)
        client(srv.location, pids, credentials={srv.location: "Bearer poll"}, sleep=sleep).fetch(
            bundle
        )
        assert party.authorize(bundle) == [7]
        # The user flow: init, the user page, the approval, the polls.
        user = Pids()
        bundle, _ = party.bundle()
        client(srv.location, user, open_user_url=approver(user.seen)).fetch(bundle)
        assert party.authorize(bundle) == [7]
    for seen in (pids.seen, user.seen):
        assert "none" not in seen and len(seen) >= 3
        # One request per worker process: every answer came from another one.
        assert len(set(seen)) == len(seen) > 1


def test_flows_in_memory_are_lost_between_workers(tmp_path: Path) -> None:
    """The control: the same run with each worker's own memory fails."""
    with serve("gunicorn", tmp_path, "memory", tp_key=new_encryption_key()) as srv:
        party = FirstParty(srv.location, srv.tp_key)
        bundle, _ = party.bundle()
        with pytest.raises(DischargeError) as info:
            client(srv.location, Pids(), open_user_url=lambda url: None).fetch(bundle)
        assert (info.value.status, info.value.message) == (404, "not found")
        assert len(bundle) == 1


def test_a_flow_started_on_the_asgi_form_finishes_on_a_wsgi_worker(tmp_path: Path) -> None:
    tp_key = new_encryption_key()
    spec = f"sqlite:{tmp_path / 'flows.db'}"
    asgi_dir, wsgi_dir = tmp_path / "asgi", tmp_path / "wsgi"
    with contextlib.ExitStack() as stack:
        asgi = stack.enter_context(serve("uvicorn", asgi_dir, spec, tp_key=tp_key))
        w = stack.enter_context(
            serve("gunicorn", wsgi_dir, spec, tp_key=tp_key, location=asgi.location)
        )
        party = FirstParty(asgi.location, tp_key)
        # The poll flow: init and polls on uvicorn; gunicorn finishes it.
        pids = Pids()
        bundle, ticket_id = party.bundle()
        # on_deferred ran under uvicorn: hand its note to the WSGI side.
        sleep_pids: list[str] = []
        note = asgi.pending / ticket_id
        sleep = completer(w.port, ticket_id, sleep_pids)

        def moved_sleep(seconds: float) -> None:
            target = w.pending / ticket_id
            if not target.exists():
                target.write_text(note.read_text())
            sleep(seconds)

        client(
            asgi.location, pids, credentials={asgi.location: "Bearer poll"}, sleep=moved_sleep
        ).fetch(bundle)
        assert party.authorize(bundle) == [7]
        assert len(set(pids.seen)) == 1 and sleep_pids and sleep_pids[0] not in pids.seen
        # The user flow on the ASGI form, its own page included.
        user = Pids()
        bundle, _ = party.bundle()
        client(asgi.location, user, open_user_url=approver(user.seen)).fetch(bundle)
        assert party.authorize(bundle) == [7]
