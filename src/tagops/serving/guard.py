"""The serving app's outermost layer: request ids, the body size bound, load shedding, request metrics.

:class:`RequestGuard` wraps the FastAPI app (:func:`tagops.serving.app.create_app`) as a pure ASGI
middleware, so what it bounds is bounded before FastAPI reads or parses anything.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tagops.serving.logs import REQUEST_ID, accept_request_id
from tagops.serving.metrics import ServingMetrics

logger = logging.getLogger(__name__)


def json_error(
    status: int, detail: Any, request_id: str | None, headers: dict[str, str] | None = None
) -> Response:
    """A JSON error body, ``{"detail": ..., "request_id": ...}``, as every error of the API is answered."""
    return JSONResponse({"detail": detail, "request_id": request_id}, status_code=status, headers=headers)


class RequestGuard:
    """Request ids, the body size bound, metrics for every request, and no stack trace ever leaking.

    Each request's id (the client's ``X-Request-ID`` when sane, else a new one:
    :func:`~tagops.serving.logs.accept_request_id`) is answered in the ``X-Request-ID`` header, kept in
    the request's state for the prediction log and error bodies, and held in
    :data:`~tagops.serving.logs.REQUEST_ID` while the request is served, for its log lines.

    A pure ASGI middleware: the body is read here, up to ``max_body_bytes`` (413 beyond), before the app
    parses it, so an oversized body is never buffered whole or parsed. Beyond ``max_in_flight`` requests
    at once (health, readiness and metrics not counted), a request is answered 503 with ``Retry-After``
    before its body is read: overload gets a quick answer instead of a queue that grows memory.
    """

    #: Paths that are always answered: a supervisor's probes and the metrics scrape.
    UNLIMITED = ("/healthz", "/readyz", "/metrics")

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, metrics: ServingMetrics, max_in_flight: int | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: HTTP requests pass the guard, anything else goes straight through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = accept_request_id(headers.get("x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        context = REQUEST_ID.set(request_id)
        status = {"code": 500, "started": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        counted = self.max_in_flight is not None and not scope["path"].startswith(self.UNLIMITED)
        try:
            if counted:
                if self.in_flight >= (self.max_in_flight or 0):
                    await json_error(
                        503,
                        f"the server is at its limit of {self.max_in_flight} requests in flight "
                        "(max_ongoing_requests); retry shortly",
                        request_id,
                        headers={"Retry-After": "1"},
                    )(scope, receive, send_with_headers)
                    counted = False
                    return
                self.in_flight += 1
            app_receive = await self._bounded_body(scope, receive, headers)
            if app_receive is None:
                await json_error(
                    413,
                    f"request body exceeds {self.max_body_bytes} bytes (max_body_bytes)",
                    request_id,
                )(scope, receive, send_with_headers)
            else:
                await self.app(scope, app_receive, send_with_headers)
        except Exception:
            logger.exception(
                "unhandled error in %s %s (request %s)", scope["method"], scope["path"], request_id
            )
            self.metrics.errors.labels(route=self._route(scope), kind="unhandled").inc()
            if not status["started"]:
                await json_error(500, "internal server error", request_id)(scope, receive, send_with_headers)
        finally:
            REQUEST_ID.reset(context)
            if counted:
                self.in_flight -= 1
            route, code = self._route(scope), int(status["code"])
            self.metrics.requests.labels(route=route, method=scope["method"], status=str(code)).inc()
            self.metrics.latency.labels(route=route, method=scope["method"]).observe(
                time.perf_counter() - started
            )
            if code >= 400:
                self.metrics.errors.labels(route=route, kind="server" if code >= 500 else "client").inc()

    @staticmethod
    def _route(scope: Scope) -> str:
        route = scope.get("route")
        return str(getattr(route, "path", "unmatched"))

    async def _bounded_body(self, scope: Scope, receive: Receive, headers: dict[str, str]) -> Receive | None:
        """A receive that replays the body read here, or ``None`` when the body is over the bound."""
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return receive
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, delivered = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
