"""API keys on the prediction API: the FastAPI dependency that admits a request by its key's role.

:func:`key_checks` returns ``require(role)``, the dependency a route takes to accept only keys whose role
allows ``role``'s routes (:class:`~tagops.serving.keys.ApiKey`); the web console checks its keys through
the same function. The keys themselves live in the service's key store (:mod:`tagops.serving.keys`).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of the dependency defined
# inside key_checks, which name local objects (the key header and the bearer scheme).
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from tagops.serving.keys import ApiKey, Role
from tagops.serving.schemas import ErrorResponse

if TYPE_CHECKING:
    from tagops.serving.service import ServingService

logger = logging.getLogger(__name__)

#: The refusals a route behind a key documents in OpenAPI.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked API key."},
    403: {"model": ErrorResponse, "description": "The key's role does not allow this."},
}

#: A FastAPI dependency that answers the request's API key, or refuses the request.
KeyCheck = Callable[..., Awaitable[ApiKey]]


def key_checks(service: "ServingService") -> Callable[[Role], KeyCheck]:
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


__all__ = ["AUTH_ERRORS", "KeyCheck", "key_checks"]
