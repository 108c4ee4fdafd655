"""The HTTP edge: a decision core and WSGI and ASGI middleware.

Every adapter asks one :class:`Gate` for each request's decision and only
translates it: the application runs with an :class:`Authorized` result, or
the client gets a 401, 403 or 503 ``application/problem+json`` response.
Pure standard library; nothing here is imported by ``import macaroons_authz``.
"""

from ._core import Authorized, Gate
from ._log import LOGGER_NAME, DecisionLog, DecisionRecord, log_decision
from ._problem import PROBLEM_JSON, Denial
from .asgi import STATE_KEY, ASGIMiddleware
from .wsgi import ENVIRON_KEY, WSGIMiddleware

__all__ = [
    "ENVIRON_KEY",
    "LOGGER_NAME",
    "PROBLEM_JSON",
    "STATE_KEY",
    "ASGIMiddleware",
    "Authorized",
    "DecisionLog",
    "DecisionRecord",
    "Denial",
    "Gate",
    "WSGIMiddleware",
    "log_decision",
]
