"""Liveness and readiness: the only endpoints without an API key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from oms import __version__
from oms.adapters.db import migrate
from oms.api.deps import ServicesDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    status: str
    database: str
    schema_revision: str | None
    expected_revision: str | None
    detail: str | None = None


@router.get("/healthz", summary="The process is alive")
def healthz() -> Health:
    return Health(status="ok", version=__version__)


@router.get(
    "/readyz",
    summary="The database is reachable and its schema is current",
    responses={503: {"model": Readiness, "description": "Not ready; 'detail' says why"}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    def check() -> Readiness:
        backend = services.engine.dialect.name
        try:
            with services.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            current = migrate.current_revision(services.engine)
        except Exception as error:  # any failure to reach the database means "not ready"
            return Readiness(
                status="unavailable",
                database=backend,
                schema_revision=None,
                expected_revision=None,
                detail=f"database unreachable: {type(error).__name__}",
            )
        expected = migrate.head_revision(services.engine)
        if current != expected:
            return Readiness(
                status="unavailable",
                database=backend,
                schema_revision=current,
                expected_revision=expected,
                detail="schema out of date: run 'oms db upgrade'",
            )
        return Readiness(
            status="ready", database=backend, schema_revision=current, expected_revision=expected
        )

    readiness = await run_in_threadpool(check)
    return JSONResponse(
        readiness.model_dump(), status_code=200 if readiness.status == "ready" else 503
    )
