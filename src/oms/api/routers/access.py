"""API key administration (admin only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal, Role
from oms.services.ports import StoredApiKey

router = APIRouter(prefix="/api-keys", tags=["access"], responses=PROBLEM_RESPONSES)
Admin = Annotated[Principal, Depends(require(Permission.API_KEYS_MANAGE))]


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["web shop"])
    role: Role
    location_codes: list[str] = Field(
        default_factory=list, description="Required for store_associate keys, forbidden for others"
    )


class ApiKeyOut(BaseModel):
    key_id: str
    name: str
    role: Role
    location_codes: list[str]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: StoredApiKey) -> ApiKeyOut:
        return cls(
            key_id=key.key_id,
            name=key.name,
            role=key.role,
            location_codes=sorted(key.location_codes),
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class CreatedApiKeyOut(ApiKeyOut):
    api_key: str = Field(description="The secret: shown this once, stored only as a hash")


@router.post("", status_code=201, summary="Create an API key (the secret is shown once)")
def create_api_key(body: ApiKeyIn, services: ServicesDep, _: Admin) -> CreatedApiKeyOut:
    created = services.access.create_key(
        name=body.name, role=body.role, location_codes=body.location_codes
    )
    return CreatedApiKeyOut(**ApiKeyOut.of(created.key).model_dump(), api_key=created.secret)


@router.get("", summary="List API keys (never their secrets)")
def list_api_keys(services: ServicesDep, _: Admin) -> list[ApiKeyOut]:
    return [ApiKeyOut.of(key) for key in services.access.list_keys()]


@router.delete("/{key_id}", status_code=204, responses=NOT_FOUND, summary="Revoke an API key")
def revoke_api_key(key_id: str, services: ServicesDep, _: Admin) -> Response:
    services.access.revoke_key(key_id)
    return Response(status_code=204)
