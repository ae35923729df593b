"""The admin routes of the prediction API: reload the model and run a canary rollout (admin keys only).

``POST /v1/admin/reload`` switches every replica to what ``model_uri`` names now and answers once they
have; ``/v1/admin/rollout`` starts a canary or changes its share (``POST``), reads it with every replica's
counts (``GET``) and aborts it (``DELETE``). The work is the service's
(:class:`~tagops.serving.service.ServingService`); these routes translate it to HTTP.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of the endpoints defined
# inside add_admin_routes, which name a local object (the admin key check).
import asyncio
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, HTTPException

from tagops.serving.auth import AUTH_ERRORS, KeyCheck
from tagops.serving.canary import RolloutError
from tagops.serving.keys import ApiKey
from tagops.serving.schemas import (
    ErrorResponse,
    ModelRef,
    ReloadResponse,
    ReplicaSync,
    RolloutRequest,
    RolloutState,
)
from tagops.serving.service import ReloadError

if TYPE_CHECKING:
    from tagops.config import ServeConfig
    from tagops.serving.service import ServingService
    from tagops.serving.state import RolloutRecord


def add_admin_routes(
    app: FastAPI, service: "ServingService", cfg: "ServeConfig", require_admin: KeyCheck
) -> None:
    """``/v1/admin/reload`` and ``/v1/admin/rollout`` (start or change, read, abort): admin keys only."""

    @app.post(
        "/v1/admin/reload",
        response_model=ReloadResponse,
        tags=["admin"],
        summary="Switch every replica to what model_uri names now (admin key); no request fails.",
        responses={
            **AUTH_ERRORS,
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
            shadow=shadow_ref(service),
        )

    @app.post(
        "/v1/admin/rollout",
        response_model=RolloutState,
        tags=["admin"],
        summary="Start a canary rollout or change its share (admin key); every replica follows.",
        responses={
            **AUTH_ERRORS,
            409: {"model": ErrorResponse, "description": "The model cannot be rolled out."},
        },
    )
    async def start_rollout(
        body: RolloutRequest, _: Annotated[ApiKey, Depends(require_admin)]
    ) -> RolloutState:
        uri = body.model_uri or challenger_uri(cfg.model_uri)
        try:
            record = await asyncio.to_thread(service.rollout.start, uri, body.weight)
        except RolloutError as error:
            raise HTTPException(409, str(error)) from error
        return as_rollout_state(record)

    @app.get(
        "/v1/admin/rollout",
        response_model=RolloutState,
        tags=["admin"],
        summary="The deployment's canary rollout (admin key).",
        responses={**AUTH_ERRORS, 404: {"model": ErrorResponse, "description": "No rollout yet."}},
    )
    async def rollout_state(_: Annotated[ApiKey, Depends(require_admin)]) -> RolloutState:
        await asyncio.to_thread(service.rollout.flush_counts)
        record = await asyncio.to_thread(service.state.get_rollout, service.deployment_id)
        if record is None:
            raise HTTPException(404, "this deployment has had no rollout")
        return as_rollout_state(record)

    @app.delete(
        "/v1/admin/rollout",
        response_model=RolloutState,
        tags=["admin"],
        summary="Abort the canary rollout: every request to the champion again (admin key).",
        responses={**AUTH_ERRORS, 409: {"model": ErrorResponse, "description": "No rollout is active."}},
    )
    async def abort_rollout(
        _: Annotated[ApiKey, Depends(require_admin)], reason: str = "aborted by an admin"
    ) -> RolloutState:
        try:
            record = await asyncio.to_thread(service.rollout.abort, reason[:500])
        except RolloutError as error:
            raise HTTPException(409, str(error)) from error
        return as_rollout_state(record)


def shadow_ref(service: "ServingService") -> ModelRef | None:
    """The model this replica copies traffic to in shadow, if any."""
    shadow = service.shadow.model if service.shadow is not None else None
    return None if shadow is None else ModelRef(**shadow.ref())


def canary_ref(service: "ServingService") -> ModelRef | None:
    """The canary this replica routes a share of requests to, if any."""
    canary = service.rollout.model
    return None if canary is None else ModelRef(**canary.ref())


def challenger_uri(model_uri: str) -> str:
    """``models:/NAME@challenger`` for the registered model ``model_uri`` names."""
    from tagops.model_ref import ModelRef as Reference

    ref = Reference.parse(model_uri)
    if ref.name is None:
        raise HTTPException(409, f"{model_uri} is not a registry model: name the model to roll out")
    return f"models:/{ref.name}@challenger"


def as_rollout_state(record: "RolloutRecord") -> RolloutState:
    """A rollout as the API shows it: its models, share, state and the counts every replica added."""
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


__all__ = ["add_admin_routes", "as_rollout_state", "canary_ref", "challenger_uri", "shadow_ref"]
