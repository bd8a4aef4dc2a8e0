"""The event feed: every committed event, in commit order, readable without a broker."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal

router = APIRouter(prefix="/events", tags=["events"], responses=PROBLEM_RESPONSES)


class CloudEventOut(BaseModel):
    """A CloudEvents 1.0 event (structured JSON), plus its position in the feed."""

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    datacontenttype: str = "application/json"
    data: dict[str, Any]
    position: int = Field(description="Use as 'after' to read on from here")


class EventPage(BaseModel):
    items: list[CloudEventOut]
    next_after: int = Field(description="Pass as 'after' for the next page")


@router.get("", summary="Read committed events after a position")
def read_events(
    services: ServicesDep,
    _: Annotated[Principal, Depends(require(Permission.EVENTS_READ))],
    after: Annotated[
        int, Query(ge=0, description="Position to read after (0 = from the start)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    type: Annotated[list[str] | None, Query(description="Only these event types")] = None,
) -> EventPage:
    page = services.events.read_page(after=after, limit=limit, types=type)
    items = [CloudEventOut(**event.cloud_event(), position=event.position) for event in page.events]
    return EventPage(items=items, next_after=page.next_after)
