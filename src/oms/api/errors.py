"""RFC 9457 problem details: one table maps every error kind to a status and a stable type."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from oms.domain import errors
from oms.observability import request_id_var

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "/problems/"

log = logging.getLogger("oms.api")

# The order matters: the first base class that matches decides the status.
STATUS_BY_ERROR: list[tuple[type[errors.DomainError], int]] = [
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Invalid, 422),
    (errors.SchemaOutOfDate, 503),
]


class FieldError(BaseModel):
    pointer: str = Field(
        description="JSON pointer to the offending field, e.g. '#/lines/0/quantity'"
    )
    detail: str


class Problem(BaseModel):
    """An RFC 9457 problem document; extra members depend on its ``type``."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Stable URI reference naming the kind of problem")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "request_id"})


def problem_body(
    status: int,
    slug: str,
    title: str,
    detail: str | None,
    instance: str,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An RFC 9457 body. An extension that would overwrite a standard member keeps its value
    under ``context_<name>`` instead, so that no domain error can corrupt the problem shape."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = instance
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    for key, value in (extensions or {}).items():
        if value is not None:
            body[f"context_{key}" if key in STANDARD_MEMBERS else key] = value
    return body


def _problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str | None,
    request: Request,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body = problem_body(status, slug, title, detail, request.url.path, extensions)
    headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def status_for(error: errors.DomainError) -> int:
    for error_class, status in STATUS_BY_ERROR:
        if isinstance(error, error_class):
            return status
    return 400


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomainError)
    return _problem_response(
        status_for(exc), exc.slug, exc.title, exc.detail, request, exc.extensions
    )


def _pointer(location: tuple[int | str, ...]) -> str:
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        where = parts.pop(0)
        prefix = "#" if where == "body" else f"{where}:"
    else:
        prefix = "#"
    return prefix + "".join(f"/{part}" for part in parts) if parts else prefix


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    field_errors = [
        {
            "pointer": _pointer(tuple(error.get("loc", ()))),
            "detail": str(error.get("msg", "invalid")),
        }
        for error in exc.errors()
    ]
    count = len(field_errors)
    return _problem_response(
        422,
        "validation-error",
        "The request is not valid",
        f"{count} field{'s' if count != 1 else ''} failed validation",
        request,
        {"errors": field_errors},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = (
        HTTPStatus(exc.status_code).phrase
        if exc.status_code in HTTPStatus._value2member_map_
        else "Error"
    )
    slug = {404: "not-found", 405: "method-not-allowed"}.get(
        exc.status_code, f"http-{exc.status_code}"
    )
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    if exc.status_code == 404 and detail is None:
        detail = f"no resource at {request.method} {request.url.path}"
    response = _problem_response(exc.status_code, slug, phrase, detail, request)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    return _problem_response(
        500,
        "internal-error",
        "Internal server error",
        "the server failed to handle the request; quote the request id when reporting it",
        request,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def _problem_content(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": Problem,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _problem_content("Missing, malformed, unknown or revoked API key"),
    403: _problem_content("The key's role or location binding does not allow this"),
    422: _problem_content("Validation failed; 'errors' lists each field with a JSON pointer"),
    500: _problem_content("Unexpected server error"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _problem_content("The resource does not exist")}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: _problem_content("The current state does not allow this request")
}

PROBLEM_TYPES: dict[str, str] = {
    "validation-error": "A field of the request failed validation; see 'errors'.",
    "not-found": "The resource or route does not exist.",
    "method-not-allowed": "The route exists but not with this HTTP method.",
    "internal-error": "An unexpected server error; quote the request id.",
}


def register_problem_type(error_class: type[errors.DomainError]) -> None:
    PROBLEM_TYPES.setdefault(error_class.slug, error_class.title)


def _all_subclasses(cls: type[errors.DomainError]) -> list[type[errors.DomainError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def known_problem_types() -> dict[str, str]:
    types = dict(PROBLEM_TYPES)
    for cls in _all_subclasses(errors.DomainError):
        types.setdefault(cls.slug, cls.title + (f": {cls.__doc__.strip()}" if cls.__doc__ else ""))
    return types
