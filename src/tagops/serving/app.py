"""The prediction API: ``create_app(service, infer)`` returns a FastAPI app, testable without Ray.

Endpoints: ``GET /healthz``, ``GET /readyz``, ``GET /v1/model``, ``POST /v1/predict``, ``POST /v1/feedback``
(key), the admin routes of :mod:`tagops.serving.admin` (reload, canary rollout; admin key), ``GET /metrics``;
OpenAPI at ``/openapi.json``, docs at ``/docs``; the web console at ``/`` (:mod:`tagops.serving.console`),
through the same code paths; API keys are checked by :mod:`tagops.serving.auth`. The
replica it serves is built by :mod:`tagops.serving.wiring`; ``tagops serve --engine uvicorn`` serves this
app as it is; the Ray Serve deployment wraps it.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of endpoints and of
# dependencies defined inside create_app, which name local objects (the key checks, the body model).
import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagops.config import ServeConfig
from tagops.serving.admin import add_admin_routes, canary_ref, shadow_ref
from tagops.serving.auth import AUTH_ERRORS, KeyCheck, key_checks
from tagops.serving.batching import BatchAnswer, Infer, InferenceThread, predict_batch
from tagops.serving.console import ConsoleApi, ConsoleSources, add_console
from tagops.serving.guard import RequestGuard, json_error
from tagops.serving.keys import ApiKey, Role
from tagops.serving.limits import FeedbackLimiter
from tagops.serving.metrics import CONTENT_TYPE
from tagops.serving.model import ServedModel
from tagops.serving.schemas import (
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    Status,
    predict_request_model,
)
from tagops.serving.service import ServingService

logger = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Request body too large."},
    415: {"model": ErrorResponse, "description": "The body was not sent as application/json."},
    422: {"model": ErrorResponse, "description": "Invalid request; each error names its field."},
}


def not_json(request: Request) -> str | None:
    """The media type of a request body that FastAPI will not read as JSON; ``None`` when it will.

    Why: ``curl -d '{...}'`` sends JSON as a form (``application/x-www-form-urlencoded``), and some
    clients send no content type; FastAPI then validates the raw bytes and answers "Input should be a
    valid dictionary", which names no field and hides the mistake.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method != "POST" or media == "application/json" or media.endswith("+json"):
        return None
    return media or "no Content-Type"


def _field(loc: Any) -> str:
    """``("body", "items", 3, "title")`` → ``items[3].title``."""
    parts = [p for p in (loc or ()) if p not in ("body",)]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def create_app(service: ServingService, infer: Infer, *, console: ConsoleSources | None = None) -> FastAPI:
    """The prediction API of a built replica: translates HTTP requests into ``service`` calls.

    Args:
        service: the replica's model, log, keys and metrics (built by
            :func:`tagops.serving.wiring.build_replica`); started and stopped with the app.
        infer: the batched inference its predictions go through (the replica's ``infer``).
        console: where the web console reads reports, the promotion history and evaluation reports
            (default: those of the ``Settings`` in the environment; nothing is read until a page asks).

    """
    cfg, metrics, replica_id = service.config, service.metrics, service.replica_id

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(service.start)
        except Exception as error:
            service.not_ready_reason = f"start-up failed: {error}"
            logger.exception("serving replica %s failed to start", replica_id)
            raise
        sync = asyncio.create_task(service.sync_forever())
        try:
            yield
        finally:
            sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync
            await asyncio.to_thread(service.stop)

    app = FastAPI(
        title="tagops",
        summary="Tag machine-learning projects with their topic.",
        version="1",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        responses=_ERRORS,
    )
    app.state.service = service
    app.add_middleware(
        RequestGuard,
        max_body_bytes=cfg.max_body_bytes,
        metrics=metrics,
        max_in_flight=cfg.max_ongoing_requests,
    )
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cfg.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    _add_error_handlers(app)
    _add_routes(app, service, cfg, infer, console or ConsoleSources.from_environment())
    return app


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return None if value is None else str(value)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        media = not_json(request)
        if media is not None and any(tuple(e.get("loc", ()))[:1] == ("body",) for e in error.errors()):
            message = f"send the body as JSON with Content-Type: application/json (got {media})"
            return json_error(415, message, _request_id(request))
        # The input is not echoed (it may be 10,000 characters, or a secret); loc and msg name the field.
        details = [
            {
                "field": "body" if e.get("type") == "json_invalid" else _field(e.get("loc")),
                "loc": list(e.get("loc", ())),
                "msg": e.get("msg", "invalid"),
                "type": e.get("type", "value_error"),
            }
            for e in error.errors()
        ]
        return json_error(422, details, _request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        headers = dict(error.headers) if error.headers else None
        return json_error(error.status_code, error.detail, _request_id(request), headers)


def _add_routes(
    app: FastAPI, service: ServingService, cfg: ServeConfig, infer: Infer, console: ConsoleSources
) -> None:
    """Every route of the API, registered in the order ``/openapi.json`` lists them."""
    require = key_checks(service)
    _add_health_routes(app, service)
    console_api = _add_predict_routes(app, service, cfg, infer, require)
    add_admin_routes(app, service, cfg, require("admin"))
    add_console(app, service, console_api, console)
    _add_metrics_route(app, service)


def _add_health_routes(app: FastAPI, service: ServingService) -> None:
    """``/healthz`` (alive), ``/readyz`` (able to answer) and ``/v1/model`` (what answers)."""

    @app.get("/healthz", response_model=Status, tags=["health"], summary="The process is alive.")
    async def healthz() -> Status:
        return Status(status="ok")

    @app.get(
        "/readyz",
        response_model=Status,
        tags=["health"],
        summary="The model is loaded and warmed and the prediction log is writable.",
        responses={503: {"model": Status, "description": "Not ready."}},
    )
    async def readyz() -> Response:
        reason = service.not_ready_reason
        if reason is None and not service.store.writer.alive:
            reason = "prediction log writer is not running"
        if service.ready and reason is None:
            return JSONResponse({"status": "ready", "detail": service.model.uri})
        return JSONResponse({"status": "not ready", "detail": reason}, status_code=503)

    @app.get("/v1/model", response_model=ModelInfo, tags=["model"], summary="The served model.")
    async def model_info() -> ModelInfo:
        model = service.model
        meta = model.predictor.metadata
        return ModelInfo(
            name=model.name,
            version=model.version,
            alias=model.alias,
            uri=model.uri,
            family=model.family,
            labels=model.labels,
            threshold=model.info.get("threshold"),
            threshold_source=model.info.get("threshold_source"),
            temperature=model.info.get("temperature"),
            run_id=meta.get("run_id"),
            dataset_sha256=meta.get("dataset_sha256"),
            holdout_metrics=model.holdout_metrics,
            loaded_at=model.loaded_at.isoformat(),
            replica=service.replica_id,
            shadow=shadow_ref(service),
            canary=canary_ref(service),
            canary_weight=service.rollout.weight if service.rollout.model is not None else 0.0,
        )


def _add_predict_routes(
    app: FastAPI,
    service: ServingService,
    cfg: ServeConfig,
    infer: Infer,
    require: Callable[[Role], KeyCheck],
) -> ConsoleApi:
    """``/v1/predict`` and ``/v1/feedback``; returns them for the web console to answer through."""
    metrics = service.metrics
    require_client = require("client")
    limiter = FeedbackLimiter(
        cfg.feedback_limits, lambda key_id, since: service.store.reader.count_feedback(key_id, since=since)
    )
    predict_request = predict_request_model(max_items=cfg.max_items, max_text_length=cfg.max_text_length)
    predict_dependencies = [Depends(require_client)] if cfg.require_key_for_predict else []

    canary_thread = InferenceThread()  # the canary's batches: off the loop, one thread (see InferenceThread)

    async def routed_infer(titles: list[str], descriptions: list[str]) -> tuple[str, BatchAnswer]:
        canary = service.rollout.route(titles, descriptions)
        if canary is None:
            return "champion", await infer(titles, descriptions)
        answers = await canary_thread.run(predict_batch, canary, [(titles, descriptions)], metrics)
        return "canary", answers[0]

    async def answer_items(
        request_id: str | None, titles: list[str], descriptions: list[str]
    ) -> tuple[ServedModel, list[dict[str, Any]]]:
        """Predict, log and count validated items: the model that answered and each item's answer."""
        started = time.perf_counter()
        side, answer = await routed_infer(titles, descriptions)
        service.rollout.count(side, failed=answer.error is not None)
        if answer.error is not None:
            raise HTTPException(500, f"prediction failed: {answer.error}")
        model = answer.model
        ids = [uuid.uuid4().hex for _ in titles]
        latency_ms = (time.perf_counter() - started) * 1000
        service.log_predictions(
            ids=ids,
            request_id=request_id,
            titles=titles,
            descriptions=descriptions,
            results=answer.results,
            model=model,
            latency_ms=latency_ms,
        )
        if side == "champion":  # a queue append: the answer does not wait for it
            service.shadow_copy(ids, titles, descriptions)
        version = str(model.version or "")
        for result in answer.results:
            metrics.predictions.labels(
                tag=result["tag"], abstained=str(bool(result["abstained"])).lower(), model_version=version
            ).inc()
        return model, [
            {
                "prediction_id": prediction_id,
                "tag": result["tag"],
                "confidence": result["confidence"],
                "abstained": result["abstained"],
                "probabilities": result["probabilities"],
            }
            for prediction_id, result in zip(ids, answer.results, strict=True)
        ]

    async def predict(request: Request, body: PredictRequest) -> Response:
        titles = [item.title for item in body.items]
        descriptions = [item.description for item in body.items]
        model, predictions = await answer_items(_request_id(request), titles, descriptions)
        # Returned as a response, so FastAPI does not validate it again against PredictResponse (which
        # documents it): built here from the model's own output, it is valid by construction.
        return JSONResponse({"model": model.ref(), "predictions": predictions})

    # The body model carries this app's bounds; it is set here so /openapi.json shows them too.
    predict.__annotations__ = {**predict.__annotations__, "body": predict_request}
    app.post(
        "/v1/predict",
        response_model=PredictResponse,
        tags=["predict"],
        summary="Tag 1 to max_items projects.",
        dependencies=predict_dependencies,
        responses=AUTH_ERRORS if cfg.require_key_for_predict else None,
    )(predict)

    @app.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        status_code=201,
        tags=["predict"],
        summary="Record the correct tag for a prediction (API key).",
        responses={
            **AUTH_ERRORS,
            404: {"model": ErrorResponse, "description": "Unknown prediction id."},
            429: {"model": ErrorResponse, "description": "The key's feedback rate or daily cap is reached."},
        },
    )
    async def feedback(
        body: FeedbackRequest, key: Annotated[ApiKey, Depends(require_client)]
    ) -> FeedbackResponse:
        labels = service.model.labels
        if labels and body.tag not in labels:
            raise RequestValidationError(
                [{"loc": ("body", "tag"), "msg": f"tag must be one of {labels}", "type": "enum"}]
            )
        try:
            refusal = await asyncio.to_thread(limiter.check, key.key_id, key.role)
            if refusal is not None:
                metrics.feedback_refused.labels(role=key.role).inc()
                raise HTTPException(429, refusal.reason, {"Retry-After": str(refusal.retry_after_s)})
            known = await asyncio.to_thread(service.find_prediction, body.prediction_id)
            if not known:
                raise HTTPException(404, f"no prediction with id {body.prediction_id} (field prediction_id)")
            feedback_id = await asyncio.to_thread(
                service.store.add_feedback, prediction_id=body.prediction_id, tag=body.tag, key_id=key.key_id
            )
        except HTTPException:
            raise
        except Exception as error:
            logger.error("feedback for %s not stored: %s", body.prediction_id, error)
            raise HTTPException(
                503, "the prediction log is unavailable; feedback not stored, try again"
            ) from error
        status = "trusted" if key.trusted else "pending_review"
        metrics.feedback.labels(role=key.role, status=status).inc()
        return FeedbackResponse(
            feedback_id=feedback_id, prediction_id=body.prediction_id, tag=body.tag, status=status
        )

    key_checks = {role: require(role) for role in ("client", "labeller", "admin")}

    async def check_key(token: str | None, role: Role) -> ApiKey:
        return await key_checks[role](token, None)

    # The console answers through these same functions: one set of key, bound and feedback rules.
    return ConsoleApi(
        check_key=check_key,
        predict_request=predict_request,
        answer_items=answer_items,
        record_feedback=feedback,
    )


def _add_metrics_route(app: FastAPI, service: ServingService) -> None:
    """``/metrics``: the replica's Prometheus metrics, with the prediction log's queue and size read first."""
    metrics = service.metrics

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics of this replica.",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}},
    )
    async def prometheus_metrics() -> Response:
        metrics.log_queue_rows.set(service.store.writer.pending_rows)
        if (size := service.store.writer.size) is not None:
            metrics.log_size_rows.labels(table="predictions").set(size.predictions)
            metrics.log_size_rows.labels(table="shadow_predictions").set(size.shadow_predictions)
            if size.bytes is not None:
                metrics.log_size_bytes.set(size.bytes)
        if service.store.writer.journal is not None:
            for kind, count in service.store.writer.journal.files().items():
                metrics.log_journal_files.labels(kind=kind).set(count)
        return Response(metrics.render(), media_type=CONTENT_TYPE)


def dump_openapi(app: FastAPI) -> str:
    """The app's OpenAPI document as JSON text."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True)


__all__ = ["Infer", "create_app", "dump_openapi"]
