"""The examples' Flask, FastAPI and Django applications, as the framework tests run them.

The tests import the examples (examples/flask_app.py, fastapi_app.py,
django_app.py: the code the guides show) with :func:`example`. The servers
under test import this module: :func:`flask_app` and :func:`django_app`
(gunicorn) and :func:`fastapi_app` (uvicorn) build the example's
application on the SQLite keyring and revocation store named by the
environment (see web_app), judging accesses at web_app.AT.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from web_app import AT, _verifier

from macaroons_authz import AsyncVerifier

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str) -> ModuleType:
    """The example module *name* (``"flask_app"``...), imported once under that name."""
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # Django's ROOT_URLCONF names it
        spec.loader.exec_module(module)
    return module


def with_pid(app: WSGIApplication) -> WSGIApplication:
    """*app*, answering with the worker's process id in an ``X-Pid`` header."""

    def wrapped(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, [*headers, ("X-Pid", str(os.getpid()))], *exc)

        return app(environ, start)

    return wrapped


def flask_app() -> WSGIApplication:
    """For ``gunicorn 'web_framework_apps:flask_app()'``."""
    app: WSGIApplication = example("flask_app").create_app(_verifier(), clock=lambda: AT)
    return with_pid(app)


def django_app() -> WSGIApplication:
    """For ``gunicorn 'web_framework_apps:django_app()'``."""
    from django.core.wsgi import get_wsgi_application

    example("django_app").configure(_verifier(), clock=lambda: AT)
    return with_pid(get_wsgi_application())


def fastapi_app() -> Any:
    """For ``uvicorn --factory web_framework_apps:fastapi_app``, with an async verifier."""
    return example("fastapi_app").create_app(AsyncVerifier.of(_verifier()), clock=lambda: AT)
