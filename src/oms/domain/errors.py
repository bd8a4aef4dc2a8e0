"""One exception class per business refusal.

Each class has a stable ``slug`` (it becomes the problem ``type`` in the API) and a ``title``.
The HTTP status is chosen in one table in :mod:`oms.api.errors` from the base class:
:class:`NotFound` -> 404, :class:`Conflict` -> 409, :class:`Invalid` -> 422,
:class:`Forbidden` -> 403, :class:`Unauthenticated` -> 401.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    slug: ClassVar[str] = "domain-error"
    title: ClassVar[str] = "The request was refused"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions: dict[str, Any] = extensions


class NotFound(DomainError):
    slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    """The request is well formed but the current state does not allow it."""

    slug = "conflict"
    title = "Conflict with the current state"


class Invalid(DomainError):
    """The request breaks a business rule about its content (field-level ``errors`` optional)."""

    slug = "invalid-request"
    title = "The request is not valid"


class Forbidden(DomainError):
    slug = "forbidden"
    title = "Not allowed"


class Unauthenticated(DomainError):
    slug = "unauthenticated"
    title = "Authentication required"


class IdempotencyKeyReused(Invalid):
    slug = "idempotency-key-reused"
    title = "Idempotency key reused with a different request"


class IdempotentRequestInProgress(Conflict):
    slug = "idempotent-request-in-progress"
    title = "A request with this idempotency key is still being processed"


class SchemaOutOfDate(DomainError):
    slug = "schema-out-of-date"
    title = "The database schema is not current"
