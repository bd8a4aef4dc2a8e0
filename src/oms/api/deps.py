"""FastAPI dependencies: the services container and the authenticated principal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from oms.bootstrap import Services
from oms.domain.access import Permission, Principal

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key made with 'oms apikey create' or POST /api-keys (shown once).",
)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(
    request: Request, services: ServicesDep, api_key: str | None = Security(api_key_header)
) -> Principal:
    if api_key is None:
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            api_key = authorization[7:].strip()
    principal: Principal = await run_in_threadpool(services.access.authenticate, api_key)
    request.state.principal = principal
    return principal


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency that authenticates the caller and checks one permission (403 if missing)."""

    def checker(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        principal.require(permission)
        return principal

    checker.__name__ = f"require_{permission.value.replace(':', '_')}"
    return checker


PrincipalDep = Annotated[Principal, Depends(authenticate)]
