"""Request ids and structured logs of the prediction API, the same on uvicorn and on Ray Serve replicas.

Every HTTP request gets an id (:func:`accept_request_id`): the client's ``X-Request-ID`` when it is a sane
token, else a new one. :class:`~tagops.serving.guard.RequestGuard` returns it in the response's
``X-Request-ID`` header and holds it in :data:`REQUEST_ID` while the request is served, so that
:class:`RequestIdFilter` puts it on every log record emitted meanwhile by the request's task and the
threads it hands work to, whatever the logger (the app's, uvicorn's access log). With ``log_format:
json`` (``tagops serve --log-format json``) :class:`JsonFormatter` writes each record as one JSON object
per line, for a log collector:

    {"time": "2026-01-02T03:04:05.678Z", "level": "ERROR", "logger": "tagops.serving.auth",
     "message": "API key check failed: database is locked", "request_id": "req-42"}

The uvicorn engine formats the `tagops` command's console this way (:mod:`tagops.cli.logs`); a Ray Serve
replica calls :func:`configure_replica_logging` when it starts. Standard library only: importing this
module imports nothing heavy.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

#: The id of the request being served in this context (``None`` outside a request).
REQUEST_ID: ContextVar[str | None] = ContextVar("tagops_request_id", default=None)

#: A client's ``X-Request-ID`` that is kept: at most 64 characters (the prediction log's column) of
#: letters, digits, ``.``, ``_`` and ``-``. Anything else (spaces, quotes, control characters, a
#: kilobyte of text) is replaced, so an id can go into a header, a log line or a URL as it is.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

LogFormat = Literal["text", "json"]


def accept_request_id(offered: str | None) -> str:
    """The client's id when it is sane (:data:`SANE_REQUEST_ID`), else a new one (32 hex digits)."""
    if offered and SANE_REQUEST_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to each record emitted while a request is served (a handler's filter).

    A handler's filter sees every record the handler writes, including those propagated from other
    loggers, which a logger's own filter would not. A record that already carries a ``request_id``
    (from Ray Serve's context, or ``extra=``) keeps it outside a request of ours.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Always ``True``: the filter only adds the attribute."""
        request_id = REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (newlines in the message and traceback are escaped)."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = str(request_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class ReplicaLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The JSON lines a Ray Serve replica writes on its stderr (a class of its own, installed once)."""


def json_handler(handler: logging.Handler) -> logging.Handler:
    """``handler`` writing JSON lines with the request id: its formatter replaced, the filter added."""
    handler.setFormatter(JsonFormatter())
    if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
        handler.addFilter(RequestIdFilter())
    return handler


def configure_replica_logging(log_format: LogFormat) -> None:
    """Format a Ray Serve replica's log lines as ``log_format`` says (text: Ray's own format, unchanged).

    With ``json``, records of every logger go to stderr as JSON lines (``tagops`` from INFO, other
    libraries from WARNING, as ``tagops serve`` shows them), and so do the lines Ray Serve writes there
    for the replica, which Ray collects into the worker's log file. Ray Serve's own replica log file is
    made JSON by the deployment's ``logging_config``
    (:func:`tagops.serving.ray.deployment.deployment_options`).
    """
    if log_format != "json":
        return
    root = logging.getLogger()
    if not any(isinstance(handler, ReplicaLogHandler) for handler in root.handlers):
        root.addHandler(json_handler(ReplicaLogHandler(sys.stderr)))
    logging.getLogger("tagops").setLevel(logging.INFO)
    ray_serve_lines_as_json()


def ray_serve_lines_as_json() -> None:
    """Ray Serve's console lines as JSON too: its ``ray.serve`` logger does not propagate to the root's.

    Serve sets that logger up when it is imported (in the ``tagops serve`` process) and again for each
    replica; its console handler is a plain ``StreamHandler`` (its file handler sits behind a
    ``MemoryHandler`` and keeps Serve's own encoding).
    """
    for handler in logging.getLogger("ray.serve").handlers:
        if type(handler) is logging.StreamHandler:
            json_handler(handler)
