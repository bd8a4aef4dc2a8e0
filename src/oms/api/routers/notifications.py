"""Customers' contact preferences and the email sent to them (contact history)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal
from oms.domain.errors import NotFound
from oms.domain.notifications import ContactPreferences
from oms.services.ports import Delivery

router = APIRouter(tags=["notifications"], responses=PROBLEM_RESPONSES)
Reader = Annotated[Principal, Depends(require(Permission.ORDERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.ORDERS_WRITE))]


class ContactPreferencesIn(BaseModel):
    email_enabled: bool = Field(default=True, description="False: no email at all")
    marketing_opt_out: bool = Field(
        default=False, description="True: no marketing-like messages (e.g. pickup reminders)"
    )
    language: str | None = Field(default=None, examples=["de"], max_length=16)


class ContactPreferencesOut(ContactPreferencesIn):
    email: str

    @classmethod
    def of(cls, p: ContactPreferences) -> ContactPreferencesOut:
        return cls(
            email=p.email,
            email_enabled=p.email_enabled,
            marketing_opt_out=p.marketing_opt_out,
            language=p.language,
        )


class DeliveryOut(BaseModel):
    event_id: str
    event_type: str
    channel: str
    template: str
    language: str
    recipient: str | None
    subject: str | None
    status: str = Field(description="pending, sending, sent, skipped, failed or invalid")
    attempts: int
    last_error: str | None = Field(description="Why it was skipped, or the last failure")
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            event_id=d.event_id,
            event_type=d.event_type,
            channel=d.channel,
            template=d.template,
            language=d.language,
            recipient=d.recipient,
            subject=d.subject,
            status=d.status,
            attempts=d.attempts,
            last_error=d.last_error,
            created_at=d.created_at,
            sent_at=d.sent_at,
        )


@router.get(
    "/contact-preferences/{email}",
    responses=NOT_FOUND,
    summary="A customer's contact preferences",
)
def get_preferences(email: str, services: ServicesDep, _: Reader) -> ContactPreferencesOut:
    preferences = services.notifications.preferences(email)
    if preferences is None:
        raise NotFound(f"no contact preferences recorded for '{email}' (defaults apply)")
    return ContactPreferencesOut.of(preferences)


@router.put("/contact-preferences/{email}", summary="Set a customer's contact preferences")
def put_preferences(
    email: str, body: ContactPreferencesIn, services: ServicesDep, _: Writer
) -> ContactPreferencesOut:
    return ContactPreferencesOut.of(
        services.notifications.set_preferences(
            email,
            email_enabled=body.email_enabled,
            marketing_opt_out=body.marketing_opt_out,
            language=body.language,
        )
    )


@router.get("/notifications", summary="Messages sent (or skipped) for a customer")
def list_deliveries(
    services: ServicesDep,
    _: Reader,
    recipient: Annotated[str, Query(description="The customer's email address")],
) -> list[DeliveryOut]:
    return [DeliveryOut.of(d) for d in services.notifications.deliveries(recipient=recipient)]
