"""The console's HTTP routes: server-rendered pages over the API's own key checks, bounds and feedback rules.

Forms post ``application/x-www-form-urlencoded`` bodies (parsed here with the standard library, so no
multipart dependency) and every answer is a whole page: nothing needs JavaScript. A key typed into a form
is checked exactly as the API checks a header and is never written back into a page.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from tagops.serving.console.sources import (
    ConsoleSources,
    recent_monitor_summaries,
    recent_promotion_history,
)
from tagops.serving.console.views import (
    Answer,
    build_answer,
    build_model_card,
    build_monitor_window,
    build_promotion_event,
)
from tagops.serving.schemas import FeedbackRequest, FeedbackResponse, PredictRequest

if TYPE_CHECKING:
    from jinja2 import Environment

    from tagops.serving.keys import ApiKey, Role
    from tagops.serving.model import ServedModel
    from tagops.serving.service import ServingService

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_PATH = "/console/static"
#: Console pages load nothing from anywhere but this server, run no inline script or style, and are never
#: framed (a key typed into a framed page could be clickjacked).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
#: A console form has at most a handful of fields; more is not a form of ours.
MAX_FORM_FIELDS = 8


@dataclass(frozen=True)
class ConsoleApi:
    """The API's own request handling, which the console's forms go through (one set of rules)."""

    #: Checks a key for a role as the API's ``Authorization`` check does; raises ``HTTPException``.
    check_key: Callable[[str | None, Role], Awaitable[ApiKey]]
    #: The app's predict request model, with its ``max_text_length`` bounds.
    predict_request: type[PredictRequest]
    #: Predicts, logs and counts validated items: ``(request_id, titles, descriptions)``.
    answer_items: Callable[
        [str | None, list[str], list[str]], Awaitable[tuple[ServedModel, list[dict[str, Any]]]]
    ]
    #: The ``POST /v1/feedback`` handler: label check, rate limits, prediction look-up, storage.
    record_feedback: Callable[[FeedbackRequest, ApiKey], Awaitable[FeedbackResponse]]


class FormError(Exception):
    """A posted body that is not a form of ours."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Notice:
    """A message shown at the top of a form: an error (``alert``) or an outcome (``status``)."""

    message: str
    status: int | None = None
    errors: list[str] = field(default_factory=list)


def percent(value: float | None, digits: int = 1) -> str:
    """``0.4213`` → ``42.1 %``; ``None`` → a dash."""
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def number(value: float | None, digits: int = 3) -> str:
    """A score with ``digits`` decimals; ``None`` → a dash."""
    return "—" if value is None else f"{value:.{digits}f}"


def p_value(value: float | None) -> str:
    """A p-value readable at every scale; ``None`` → a dash."""
    if value is None:
        return "—"
    return f"{value:.2e}" if 0 < value < 0.001 else f"{value:.3f}"


def moment(value: str | None) -> str:
    """An ISO 8601 time to the second (``2030-01-02 03:04:05+00:00``); text that is not one, as it is."""
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(value).isoformat(sep=" ", timespec="seconds")
    except ValueError:
        return value


@functools.cache
def templates() -> Environment:
    """The console's Jinja2 templates, autoescaped, failing loudly on a name a page does not pass.

    Made at the first page served, not with the app: every replica builds the app, few serve pages, and
    Jinja2's import is the console's only start-up cost.
    """
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(percent=percent, number=number, p_value=p_value, moment=moment)
    return environment


async def read_form(request: Request) -> dict[str, str]:
    """The first value of each field of a urlencoded form body (already bounded by ``max_body_bytes``)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError(415, "send the form as application/x-www-form-urlencoded")
    body = await request.body()
    try:
        fields = parse_qs(
            body.decode("ascii"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
        )
    except ValueError as error:  # not ASCII, not UTF-8 once decoded, or too many fields
        raise FormError(400, "the form could not be read (UTF-8, urlencoded, a few fields)") from error
    return {name: values[0] for name, values in fields.items()}


def _detail(error: HTTPException) -> str:
    detail = error.detail
    return detail if isinstance(detail, str) else str(detail)


def _field_errors(errors: list[Any], names: dict[str, str]) -> list[str]:
    """Readable messages naming the form's field for pydantic errors (``items.0.title`` → ``Title``)."""
    messages = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
        label = next((names[part] for part in reversed(loc) if part in names), "Form")
        messages.append(f"{label}: {error.get('msg', 'invalid')}")
    return messages


def add_console(app: FastAPI, service: ServingService, api: ConsoleApi, sources: ConsoleSources) -> None:
    """Serve the console on ``app``: ``/``, ``/console/model``, ``/console/monitoring`` and its assets."""
    keyed = service.config.require_key_for_predict
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="console-static")

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        html = templates().get_template(name).render(root=root, page=name.removesuffix(".html"), **context)
        headers = dict(PAGE_HEADERS)
        if (retry := context.get("retry_after")) is not None:
            headers["Retry-After"] = str(retry)
        return HTMLResponse(html, status_code=status, headers=headers)

    def request_id(request: Request) -> str | None:
        value = request.scope.get("state", {}).get("request_id")
        return None if value is None else str(value)

    def predict_page(request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        values: dict[str, Any] = {
            "keyed": keyed,
            "labels": service.model.labels,
            "max_text_length": service.config.max_text_length,
            "title": "",
            "description": "",
            "answer": None,
            "notice": None,
            "feedback": None,
            "feedback_notice": None,
            "feedback_for": None,
            "feedback_tag": None,
            "request_id": request_id(request),
            "retry_after": None,
        }
        values.update(context)
        return render(request, "index.html", status, **values)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def console_home(request: Request) -> Response:
        return predict_page(request)

    @app.post("/console/predict", include_in_schema=False, response_class=HTMLResponse)
    async def console_predict(request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError as error:
            return predict_page(request, error.status, notice=Notice(error.message, error.status))
        title, description = form.get("title", ""), form.get("description", "")
        kept: dict[str, Any] = {"title": title, "description": description}
        if keyed:
            try:
                await api.check_key(form.get("key") or None, "client")
            except HTTPException as error:
                notice = Notice(f"Not predicted: {_detail(error)}", error.status_code)
                return predict_page(request, error.status_code, notice=notice, **kept)
        try:
            api.predict_request.model_validate({"items": [{"title": title, "description": description}]})
        except ValidationError as error:
            names = {"title": "Title", "description": "Description"}
            notice = Notice("Not predicted: the form has errors.", 422, _field_errors(error.errors(), names))
            return predict_page(request, 422, notice=notice, **kept)
        try:
            model, predictions = await api.answer_items(request_id(request), [title], [description])
        except HTTPException as error:
            notice = Notice(f"Not predicted: {_detail(error)}", error.status_code)
            return predict_page(request, error.status_code, notice=notice, **kept)
        answer: Answer = build_answer(
            predictions[0], threshold=model.info.get("threshold"), model=model.ref()
        )
        return predict_page(request, answer=answer, feedback_for=answer.prediction_id, **kept)

    @app.post("/console/feedback", include_in_schema=False, response_class=HTMLResponse)
    async def console_feedback(request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError as error:
            return predict_page(request, error.status, feedback_notice=Notice(error.message, error.status))
        prediction_id, tag = form.get("prediction_id", ""), form.get("tag", "")
        kept: dict[str, Any] = {"feedback_for": prediction_id, "feedback_tag": tag}
        names = {"prediction_id": "Prediction", "tag": "Correct tag"}
        try:  # the key first, as the API checks its key before it reads the body
            key = await api.check_key(form.get("key") or None, "client")
            body = FeedbackRequest(prediction_id=prediction_id, tag=tag)
            stored = await api.record_feedback(body, key)
        except ValidationError as error:
            notice = Notice(
                "Feedback not recorded: the form has errors.", 422, _field_errors(error.errors(), names)
            )
            return predict_page(request, 422, feedback_notice=notice, **kept)
        except RequestValidationError as error:
            notice = Notice(
                "Feedback not recorded: the form has errors.", 422, _field_errors(list(error.errors()), names)
            )
            return predict_page(request, 422, feedback_notice=notice, **kept)
        except HTTPException as error:
            retry = (error.headers or {}).get("Retry-After")
            notice = Notice(f"Feedback not recorded: {_detail(error)}", error.status_code)
            return predict_page(request, error.status_code, feedback_notice=notice, retry_after=retry, **kept)
        return predict_page(request, feedback=stored, **kept)

    @app.get("/console/model", include_in_schema=False, response_class=HTMLResponse)
    async def console_model(request: Request) -> Response:
        model = service.model
        report = await asyncio.to_thread(sources.evaluation, model)
        card = build_model_card(
            ref=model.ref(),
            uri=model.uri,
            info=model.info,
            metadata=model.predictor.metadata,
            holdout_metrics=model.holdout_metrics,
            loaded_at=model.loaded_at.isoformat(timespec="seconds"),
            report=report,
        )
        return render(request, "model.html", card=card)

    def live_models() -> dict[str, Any]:
        """What ``GET /v1/model`` tells anyone: the served model, its shadow and its canary's share."""
        shadow = service.shadow.model if service.shadow is not None else None
        canary = service.rollout.model
        return {
            "served": {**service.model.ref(), "uri": service.model.uri},
            "shadow": None if shadow is None else {**shadow.ref(), "uri": shadow.uri},
            "shadow_configured": service.config.shadow_model_uri is not None,
            "canary": None if canary is None else {**canary.ref(), "uri": canary.uri},
            "canary_weight": service.rollout.weight if canary is not None else 0.0,
        }

    def read_operations() -> dict[str, Any]:
        """What only an admin sees: monitor windows, the promotion history and the rollout's record."""
        service.rollout.flush_counts()
        return {
            "windows": [build_monitor_window(s) for s in recent_monitor_summaries(sources.reports_dir)],
            "history": [
                build_promotion_event(r) for r in recent_promotion_history(sources.promotion_history)
            ],
            "rollout": service.state.get_rollout(service.deployment_id),
            "shadow_reason": service.shadow_reason,
        }

    @app.get("/console/monitoring", include_in_schema=False, response_class=HTMLResponse)
    async def console_monitoring(request: Request) -> Response:
        return render(request, "monitoring.html", live=live_models(), admin=None, notice=None)

    @app.post("/console/monitoring", include_in_schema=False, response_class=HTMLResponse)
    async def console_monitoring_admin(request: Request) -> Response:
        live = live_models()
        try:
            form = await read_form(request)
            await api.check_key(form.get("key") or None, "admin")
        except FormError as error:
            notice = Notice(error.message, error.status)
            return render(request, "monitoring.html", error.status, live=live, admin=None, notice=notice)
        except HTTPException as error:
            notice = Notice(_detail(error), error.status_code)
            return render(request, "monitoring.html", error.status_code, live=live, admin=None, notice=notice)
        try:
            admin = await asyncio.to_thread(read_operations)
        except Exception as error:  # the serving database is down: say so, keep the public part
            logger.error("console: cannot read the rollout state: %s", error)
            notice = Notice("The serving database is unavailable; try again.", 503)
            return render(request, "monitoring.html", 503, live=live, admin=None, notice=notice)
        return render(request, "monitoring.html", live=live, admin=admin, notice=None)
