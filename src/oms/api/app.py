"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from oms import __version__
from oms.api.errors import install_error_handlers
from oms.api.middleware import IdempotencyMiddleware, RequestIdMiddleware
from oms.api.routers import (
    access,
    care,
    events,
    fulfillments,
    health,
    inventory,
    network,
    notifications,
    order_sourcing,
    orders,
    payments,
    problems,
    processes,
    returns,
    sourcing,
    webhooks,
)
from oms.bootstrap import Services, build_services, freeze_startup_heap, prepare_schema
from oms.config import Settings

DESCRIPTION = """
The central order management system between selling channels and the back end.

* Authenticate with an API key in the `X-API-Key` header (roles: admin, integration, care_agent,
  store_associate; store associates are bound to their locations).
* Every error is an RFC 9457 `application/problem+json` document with a stable `type`
  (see `GET /problems`).
* POST requests accept an `Idempotency-Key` header: a retry with the same key and body returns the
  stored response; the same key with another body is a 422 problem.
* Every response carries `X-Request-ID` (send your own to correlate logs).
* Events: `GET /events?after=<position>`, or the NATS JetStream stream `OMS` (`oms.<type>`).
"""


def create_app(services: Services | None = None, *, settings: Settings | None = None) -> FastAPI:
    """Build the application; without ``services`` it builds them from settings at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = None
        if getattr(app.state, "services", None) is None:
            owned = build_services(settings)
            prepare_schema(owned.engine)
            app.state.services = owned
            freeze_startup_heap()
        try:
            yield
        finally:
            if owned is not None:
                owned.close()

    app = FastAPI(
        title="Omni-channel OMS",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestIdMiddleware)
    for module in (
        health,
        access,
        network,
        inventory,
        order_sourcing,
        orders,
        fulfillments,
        events,
        webhooks,
        payments,
        notifications,
        processes,
        returns,
        care,
        sourcing,
        problems,
    ):
        app.include_router(module.router)
    return app


def create_app_from_environment() -> FastAPI:
    """The application of one ``oms serve --workers N`` worker process: settings from the
    environment, services built at start-up, JSON logs as in a single-process server."""
    from oms.observability import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings=settings)
