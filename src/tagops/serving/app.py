"""The prediction API: ``create_app(service, infer)`` returns a FastAPI app, testable without Ray.

Endpoints: ``GET /healthz``, ``GET /readyz``, ``GET /v1/model``, ``POST /v1/predict``, ``POST /v1/feedback``
(key), ``POST /v1/admin/reload`` (admin key), ``GET /metrics``; OpenAPI at ``/openapi.json``, docs at
``/docs``; the web console at ``/`` (:mod:`tagops.serving.console`), through the same code paths. The
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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagops.config import ServeConfig
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
    ModelRef,
    PredictRequest,
    PredictResponse,
    ReloadResponse,
    ReplicaSync,
    RolloutRequest,
    RolloutState,
    Status,
    predict_request_model,
)
from tagops.serving.service import ReloadError, RolloutError, ServingService

logger = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Invalid request; each error names its field."},
}
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked API key."},
    403: {"model": ErrorResponse, "description": "The key's role does not allow this."},
}


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
    require = _key_checks(service)
    _add_health_routes(app, service)
    console_api = _add_predict_routes(app, service, cfg, infer, require)
    _add_admin_routes(app, service, cfg, require("admin"))
    add_console(app, service, console_api, console)
    _add_metrics_route(app, service)


#: A FastAPI dependency that answers the request's API key, or refuses the request.
KeyCheck = Callable[..., Awaitable[ApiKey]]


def _key_checks(service: ServingService) -> Callable[[Role], KeyCheck]:
    """``require(role)``: the dependency that accepts a key only if its role allows ``role``'s routes.

    The key comes as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. A missing or unknown key is
    answered 401, a key whose role does not allow the route 403, a key store that cannot be read 503;
    each refusal is counted by its reason.
    """
    metrics = service.metrics
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")
    bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token.")

    def require(role: Role) -> KeyCheck:
        async def check_key(
            key: Annotated[str | None, Security(key_header)],
            credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        ) -> ApiKey:
            token = key or (credentials.credentials if credentials else None)
            challenge = {"WWW-Authenticate": "Bearer"}
            if not token:
                metrics.auth_failures.labels(reason="missing").inc()
                raise HTTPException(
                    401, "an API key is required (Authorization: Bearer KEY, or X-API-Key: KEY)", challenge
                )
            try:
                record = await asyncio.to_thread(service.keys.verify, token)
            except Exception as error:
                logger.error("API key check failed: %s", error)
                raise HTTPException(503, "cannot check API keys right now; try again") from error
            if record is None:
                metrics.auth_failures.labels(reason="invalid").inc()
                raise HTTPException(401, "unknown or revoked API key", challenge)
            if not record.allows(role):
                metrics.auth_failures.labels(reason="forbidden").inc()
                raise HTTPException(
                    403, f"this key's role ({record.role}) does not allow this; it needs {role}"
                )
            return record

        return check_key

    return require


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
            shadow=_shadow_ref(service),
            canary=_canary_ref(service),
            canary_weight=service.canary_weight if service.canary is not None else 0.0,
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
        canary = service.canary_for(titles, descriptions)
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
        service.count_answer(side, failed=answer.error is not None)
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
        responses=_AUTH_ERRORS if cfg.require_key_for_predict else None,
    )(predict)

    @app.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        status_code=201,
        tags=["predict"],
        summary="Record the correct tag for a prediction (API key).",
        responses={
            **_AUTH_ERRORS,
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


def _add_admin_routes(
    app: FastAPI, service: ServingService, cfg: ServeConfig, require_admin: KeyCheck
) -> None:
    """``/v1/admin/reload`` and ``/v1/admin/rollout`` (start or change, read, abort): admin keys only."""

    @app.post(
        "/v1/admin/reload",
        response_model=ReloadResponse,
        tags=["admin"],
        summary="Switch every replica to what model_uri names now (admin key); no request fails.",
        responses={
            **_AUTH_ERRORS,
            503: {"model": ErrorResponse, "description": "The new model could not be loaded."},
        },
    )
    async def reload(_: Annotated[ApiKey, Depends(require_admin)]) -> ReloadResponse:
        try:
            previous, current = await asyncio.to_thread(service.reload)
        except ReloadError as error:
            raise HTTPException(503, str(error)) from error
        total, on = await service.wait_for_replicas(current.uri)
        return ReloadResponse(
            previous=ModelRef(**previous.ref()),
            current=ModelRef(**current.ref()),
            changed=previous.uri != current.uri,
            sync=ReplicaSync(replicas=total, on_version=on),
            shadow=_shadow_ref(service),
        )

    @app.post(
        "/v1/admin/rollout",
        response_model=RolloutState,
        tags=["admin"],
        summary="Start a canary rollout or change its share (admin key); every replica follows.",
        responses={
            **_AUTH_ERRORS,
            409: {"model": ErrorResponse, "description": "The model cannot be rolled out."},
        },
    )
    async def start_rollout(
        body: RolloutRequest, _: Annotated[ApiKey, Depends(require_admin)]
    ) -> RolloutState:
        uri = body.model_uri or _challenger_uri(cfg.model_uri)
        try:
            record = await asyncio.to_thread(service.start_rollout, uri, body.weight)
        except RolloutError as error:
            raise HTTPException(409, str(error)) from error
        return _rollout_state(record)

    @app.get(
        "/v1/admin/rollout",
        response_model=RolloutState,
        tags=["admin"],
        summary="The deployment's canary rollout (admin key).",
        responses={**_AUTH_ERRORS, 404: {"model": ErrorResponse, "description": "No rollout yet."}},
    )
    async def rollout_state(_: Annotated[ApiKey, Depends(require_admin)]) -> RolloutState:
        await asyncio.to_thread(service.sync_rollout_counts)
        record = await asyncio.to_thread(service.state.get_rollout, service.deployment_id)
        if record is None:
            raise HTTPException(404, "this deployment has had no rollout")
        return _rollout_state(record)

    @app.delete(
        "/v1/admin/rollout",
        response_model=RolloutState,
        tags=["admin"],
        summary="Abort the canary rollout: every request to the champion again (admin key).",
        responses={**_AUTH_ERRORS, 409: {"model": ErrorResponse, "description": "No rollout is active."}},
    )
    async def abort_rollout(
        _: Annotated[ApiKey, Depends(require_admin)], reason: str = "aborted by an admin"
    ) -> RolloutState:
        try:
            record = await asyncio.to_thread(service.abort_rollout, reason[:500])
        except RolloutError as error:
            raise HTTPException(409, str(error)) from error
        return _rollout_state(record)


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


def _shadow_ref(service: ServingService) -> ModelRef | None:
    shadow = service.shadow.model if service.shadow is not None else None
    return None if shadow is None else ModelRef(**shadow.ref())


def _canary_ref(service: ServingService) -> ModelRef | None:
    canary = service.canary
    return None if canary is None else ModelRef(**canary.ref())


def _challenger_uri(model_uri: str) -> str:
    """``models:/NAME@challenger`` for the registered model ``model_uri`` names."""
    from tagops.model_ref import ModelRef as Reference

    ref = Reference.parse(model_uri)
    if ref.name is None:
        raise HTTPException(409, f"{model_uri} is not a registry model: name the model to roll out")
    return f"models:/{ref.name}@challenger"


def _rollout_state(record: Any) -> RolloutState:
    return RolloutState(
        state=record.state,
        champion_uri=record.champion_uri,
        champion_version=record.champion_version,
        canary_uri=record.model_uri,
        canary_version=record.model_version,
        weight=record.weight,
        started_at=record.started_at.isoformat(),
        ended_at=record.ended_at.isoformat() if record.ended_at else None,
        reason=record.reason,
        champion_answered=record.champion_answered,
        champion_failed=record.champion_failed,
        canary_answered=record.canary_answered,
        canary_failed=record.canary_failed,
    )


def dump_openapi(app: FastAPI) -> str:
    """The app's OpenAPI document as JSON text."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True)


__all__ = ["Infer", "create_app", "dump_openapi"]
