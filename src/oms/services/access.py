"""API keys: create (the secret is shown once), authenticate, list, revoke."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from oms.domain.access import Principal, Role
from oms.domain.errors import Invalid, NotFound, Unauthenticated
from oms.services.ports import Clock, Ids, StoredApiKey, UnitOfWorkFactory

KEY_PREFIX = "oms"


@dataclass(frozen=True)
class CreatedApiKey:
    key: StoredApiKey
    secret: str
    """The full key to present in ``X-API-Key``; it is never stored and never shown again."""


def hash_secret(secret: str) -> str:
    # Keys are 192-bit random tokens, so a fast hash is safe here (unlike passwords).
    return hashlib.sha256(secret.encode()).hexdigest()


class AccessService:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock, ids: Ids) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids

    def create_key(
        self, *, name: str, role: Role | str, location_codes: Iterable[str] = ()
    ) -> CreatedApiKey:
        try:
            role = Role(role)
        except ValueError:
            raise Invalid(
                f"unknown role '{role}'; choose one of {', '.join(r.value for r in Role)}",
                errors=[{"pointer": "#/role", "detail": "unknown role"}],
            ) from None
        codes = frozenset(code.strip() for code in location_codes if code.strip())
        if not name.strip():
            raise Invalid("a key needs a name", errors=[{"pointer": "#/name", "detail": "empty"}])
        if role is Role.STORE_ASSOCIATE and not codes:
            raise Invalid(
                "a store_associate key must be bound to at least one location code",
                errors=[{"pointer": "#/location_codes", "detail": "required for store_associate"}],
            )
        if role is not Role.STORE_ASSOCIATE and codes:
            raise Invalid(
                f"only store_associate keys are bound to locations, not '{role}'",
                errors=[{"pointer": "#/location_codes", "detail": "only for store_associate"}],
            )
        key_id = self._ids.new_token(9).replace("-", "x").replace("_", "y")
        secret = f"{KEY_PREFIX}_{key_id}_{self._ids.new_token(24)}"
        stored = StoredApiKey(
            key_id=key_id,
            name=name.strip(),
            role=role,
            location_codes=codes,
            secret_hash=hash_secret(secret),
            created_at=self._clock.now(),
            revoked_at=None,
        )
        with self._uow() as uow:
            uow.api_keys.add(stored)
            uow.commit()
        return CreatedApiKey(key=stored, secret=secret)

    def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthenticated("an API key is required: send it in the X-API-Key header")
        parts = presented.split("_")
        if len(parts) < 3 or parts[0] != KEY_PREFIX:
            raise Unauthenticated("the API key is malformed")
        key_id = parts[1]
        with self._uow(read_only=True) as uow:
            stored = uow.api_keys.get(key_id)
        if stored is None or not hmac.compare_digest(stored.secret_hash, hash_secret(presented)):
            raise Unauthenticated("the API key is not valid")
        if stored.revoked_at is not None:
            raise Unauthenticated("the API key has been revoked")
        return Principal(
            key_id=stored.key_id,
            name=stored.name,
            role=stored.role,
            location_codes=stored.location_codes,
        )

    def list_keys(self) -> Sequence[StoredApiKey]:
        with self._uow(read_only=True) as uow:
            return uow.api_keys.list()

    def revoke_key(self, key_id: str) -> None:
        with self._uow() as uow:
            revoked = uow.api_keys.revoke(key_id, at=self._clock.now())
            if not revoked and uow.api_keys.get(key_id) is None:
                raise NotFound(f"no API key '{key_id}'")
            uow.commit()
