"""Idempotent POSTs: a retry with the same key and body gets the stored response."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from oms.domain.errors import IdempotencyKeyReused, IdempotentRequestInProgress, Invalid
from oms.services.ports import Clock, UnitOfWorkFactory

STALE_AFTER = timedelta(minutes=5)
"""An in-progress claim older than this belongs to a request that died; it may be retaken."""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def request_fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class IdempotencyService:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock, ttl: timedelta) -> None:
        self._uow = uow
        self._clock = clock
        self._ttl = ttl

    def begin(self, scope: str, key: str, fingerprint: str) -> StoredResponse | None:
        """Claim the key for this request, or return the response stored for it.

        Raises when the key was used for another request, or when its first use is still running.
        """
        if not key or len(key) > 255:
            raise Invalid("the Idempotency-Key header must be 1 to 255 characters long")
        now = self._clock.now()
        with self._uow() as uow:
            if uow.idempotency.try_start(scope, key, fingerprint, at=now):
                uow.commit()
                return None
            record = uow.idempotency.get(scope, key)
            if record is None:  # purged between our insert attempt and the read: try once more
                started = uow.idempotency.try_start(scope, key, fingerprint, at=now)
                uow.commit()
                if started:
                    return None
                raise IdempotentRequestInProgress(
                    f"idempotency key '{key}' is being used right now"
                )
            if record.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    f"idempotency key '{key}' was used for a different request "
                    "(another method, path or body)",
                )
            if record.state == "completed" and record.response_status is not None:
                return StoredResponse(
                    record.response_status, record.response_headers, record.response_body or b""
                )
            if uow.idempotency.restart_stale(
                scope, key, fingerprint, older_than=now - STALE_AFTER, at=now
            ):
                uow.commit()
                return None
        raise IdempotentRequestInProgress(
            f"a request with idempotency key '{key}' is still being processed; retry later"
        )

    def complete(self, scope: str, key: str, response: StoredResponse) -> None:
        with self._uow() as uow:
            uow.idempotency.complete(
                scope,
                key,
                status=response.status,
                headers=response.headers,
                body=response.body,
                at=self._clock.now(),
            )
            uow.commit()

    def abandon(self, scope: str, key: str) -> None:
        """Forget the claim of a request that failed (5xx), so that it can be retried."""
        with self._uow() as uow:
            uow.idempotency.abandon(scope, key)
            uow.commit()

    def purge_expired(self) -> int:
        with self._uow() as uow:
            removed = uow.idempotency.purge(older_than=self._clock.now() - self._ttl)
            uow.commit()
            return removed
