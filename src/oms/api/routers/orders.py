"""Orders: capture from every channel, read, search, change, cancel, hold, release, progress."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import CONFLICT, NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal, Role
from oms.domain.orders import (
    Address,
    CancelRequest,
    Channel,
    Customer,
    Delivery,
    DeliveryMethod,
    Hold,
    HoldType,
    InvalidOrder,
    LineRequest,
    Order,
    OrderLine,
    PaymentReference,
    QuantityState,
    Totals,
    field_error,
)
from oms.queries.orders import OrderSearch
from oms.services.orders import CaptureOrder

router = APIRouter(prefix="/orders", tags=["orders"], responses=PROBLEM_RESPONSES)
Reader = Annotated[Principal, Depends(require(Permission.ORDERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.ORDERS_WRITE))]
Fulfiller = Annotated[Principal, Depends(require(Permission.FULFILLMENTS_WRITE))]
CHANGE_RESPONSES = {**NOT_FOUND, **CONFLICT}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests -----------------------------------------------------------------------------------


class AddressIn(Strict):
    name: str = ""
    line1: str = ""
    line2: str | None = None
    city: str = ""
    region: str | None = None
    postal_code: str = ""
    country: str = Field(default="", description="ISO 3166-1 alpha-2, e.g. US")
    phone: str | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)

    def to_domain(self) -> Address:
        return Address(**self.model_dump())


class DeliveryIn(Strict):
    method: DeliveryMethod
    address: AddressIn | None = Field(default=None, description="For ship and dropship")
    pickup_location_code: str | None = Field(
        default=None,
        description="The store for pickup, curbside, reserve_and_collect, ship_to_store",
    )
    requested_on: date | None = None
    gift: bool = False
    gift_message: str | None = Field(default=None, max_length=500)

    def to_domain(self) -> Delivery:
        return Delivery(
            method=self.method,
            address=self.address.to_domain() if self.address else None,
            pickup_location_code=self.pickup_location_code,
            requested_on=self.requested_on,
            gift=self.gift,
            gift_message=self.gift_message,
        )


class LineIn(Strict):
    sku: str = Field(max_length=64)
    quantity: int
    unit_price: Decimal
    discount: Decimal = Decimal("0")
    tax: Decimal = Decimal("0")
    total: Decimal | None = Field(
        default=None, description="quantity x unit_price - discount + tax; checked when given"
    )
    delivery: DeliveryIn

    def to_domain(self) -> LineRequest:
        return LineRequest(
            sku=self.sku,
            quantity=self.quantity,
            unit_price=self.unit_price,
            delivery=self.delivery.to_domain(),
            discount=self.discount,
            tax=self.tax,
            total=self.total,
        )


class CustomerIn(Strict):
    customer_id: str | None = Field(default=None, max_length=100)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=40)


class PaymentIn(Strict):
    method: str = Field(max_length=40, examples=["card"])
    token: str = Field(
        max_length=200, description="The payment service's token, never a card number"
    )
    amount: Decimal | None = None
    currency: str | None = Field(default=None, max_length=3)


class TotalsIn(Strict):
    subtotal: Decimal | None = None
    discount: Decimal | None = None
    tax: Decimal | None = None
    shipping: Decimal | None = None
    total: Decimal | None = None
    currency: str | None = Field(default=None, max_length=3)


class OrderIn(Strict):
    channel: Channel
    channel_reference: str = Field(
        max_length=200, description="The channel's own id; a retry with it returns the same order"
    )
    customer: CustomerIn
    currency: str = Field(max_length=3, examples=["USD"])
    lines: list[LineIn]
    shipping_charge: Decimal = Decimal("0")
    totals: TotalsIn | None = None
    payments: list[PaymentIn] = Field(default_factory=list)
    notes: str | None = Field(default=None, max_length=2000)
    tags: list[str] = Field(default_factory=list)

    def to_command(self) -> CaptureOrder:
        return CaptureOrder(
            channel=self.channel.value,
            channel_reference=self.channel_reference,
            customer=Customer(**self.customer.model_dump()),
            currency=self.currency,
            lines=[line.to_domain() for line in self.lines],
            shipping_charge=self.shipping_charge,
            totals=Totals(**self.totals.model_dump()) if self.totals else None,
            payments=[PaymentReference(**payment.model_dump()) for payment in self.payments],
            notes=self.notes,
            tags=self.tags,
        )


class CancellationIn(Strict):
    reason: str = Field(min_length=1, max_length=500)
    line_no: int | None = Field(default=None, description="Cancel one line (default: the order)")
    quantity: int | None = Field(default=None, description="Cancel part of the line's quantity")


class DecisionIn(Strict):
    reason: str | None = Field(default=None, max_length=500)


class ShipAddressIn(Strict):
    address: AddressIn
    line_nos: list[int] | None = Field(default=None, description="Default: every shipped line")
    reason: str | None = Field(default=None, max_length=500)


class PickupLocationIn(Strict):
    location_code: str = Field(min_length=1, max_length=64)
    reason: str | None = Field(default=None, max_length=500)


class DeliveryChangeIn(Strict):
    delivery: DeliveryIn
    reason: str | None = Field(default=None, max_length=500)


class AddLineIn(Strict):
    line: LineIn
    reason: str | None = Field(default=None, max_length=500)


class QuantityIn(Strict):
    quantity: int
    reason: str | None = Field(default=None, max_length=500)


class HoldIn(Strict):
    type: HoldType
    reason: str = Field(min_length=1, max_length=500)


class HoldReleaseIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class QuantityMoveIn(Strict):
    from_state: QuantityState
    to_state: QuantityState
    quantity: int = Field(ge=1)
    location_code: str | None = None
    reason: str | None = Field(default=None, max_length=500)


class BackorderAllocationIn(Strict):
    sku: str = Field(min_length=1, max_length=64)


# --- responses ----------------------------------------------------------------------------------


class QuantityOut(BaseModel):
    state: QuantityState
    location_code: str | None
    quantity: int


class LineOut(BaseModel):
    line_no: int
    sku: str
    quantity: int
    unit_price: Decimal
    discount: Decimal
    tax: Decimal
    amount: Decimal
    status: str
    promised_on: date | None
    delivery: dict[str, Any]
    quantities: list[QuantityOut]

    @classmethod
    def of(cls, line: OrderLine) -> LineOut:
        delivery = line.delivery
        return cls(
            line_no=line.line_no,
            sku=line.sku,
            quantity=line.quantity,
            unit_price=line.unit_price,
            discount=line.discount,
            tax=line.tax,
            amount=line.amount,
            status=line.status,
            promised_on=line.promised_on,
            delivery={
                **delivery.describe(),
                "gift": delivery.gift,
                "gift_message": delivery.gift_message,
            },
            quantities=[
                QuantityOut(state=state, location_code=location, quantity=quantity)
                for (state, location), quantity in sorted(
                    line.buckets.items(),
                    key=lambda item: (list(QuantityState).index(item[0][0]), item[0][1] or ""),
                )
            ],
        )


class HoldOut(BaseModel):
    hold_id: str
    type: HoldType
    reason: str
    placed_by: str
    placed_at: datetime
    released_by: str | None
    released_at: datetime | None
    release_reason: str | None

    @classmethod
    def of(cls, hold: Hold) -> HoldOut:
        return cls(**{name: getattr(hold, name) for name in cls.model_fields})


class CancelRequestOut(BaseModel):
    request_id: str
    line_no: int
    location_code: str
    quantity: int
    reason: str
    status: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None

    @classmethod
    def of(cls, request: CancelRequest) -> CancelRequestOut:
        return cls(**{name: getattr(request, name) for name in cls.model_fields})


class OrderOut(BaseModel):
    order_id: str
    order_number: str
    channel: Channel
    channel_reference: str
    status: str = Field(description="Derived from the lines' quantities, never set by hand")
    on_hold: bool
    customer: dict[str, str | None]
    currency: str
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    shipping_charge: Decimal
    total: Decimal
    created_at: datetime
    notes: str | None
    tags: list[str]
    payments: list[dict[str, Any]]
    lines: list[LineOut]
    holds: list[HoldOut]
    cancel_requests: list[CancelRequestOut]

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(
            order_id=order.order_id,
            order_number=order.order_number,
            channel=order.channel,
            channel_reference=order.channel_reference,
            status=order.status,
            on_hold=order.on_hold,
            customer={
                "customer_id": order.customer.customer_id,
                "name": order.customer.name,
                "email": order.customer.email,
                "phone": order.customer.phone,
            },
            currency=order.currency,
            subtotal=order.subtotal,
            discount_total=order.discount_total,
            tax_total=order.tax_total,
            shipping_charge=order.shipping_charge,
            total=order.total,
            created_at=order.created_at,
            notes=order.notes,
            tags=order.tags,
            payments=[
                {"method": p.method, "token": p.token, "amount": p.amount, "currency": p.currency}
                for p in order.payments
            ],
            lines=[LineOut.of(line) for line in order.lines],
            holds=[HoldOut.of(hold) for hold in order.holds],
            cancel_requests=[CancelRequestOut.of(r) for r in order.cancel_requests],
        )


class TimelineOut(BaseModel):
    at: datetime
    actor: str
    action: str
    reason: str | None
    line_no: int | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class OrderEventOut(BaseModel):
    position: int
    id: str
    type: str
    time: datetime
    data: dict[str, Any]


class FulfillmentOut(BaseModel):
    """The units one location holds or fulfils for this order, by line and state."""

    location_code: str
    lines: list[dict[str, Any]]


class OrderDetailOut(OrderOut):
    fulfillments: list[FulfillmentOut]
    timeline: list[TimelineOut]
    events: list[OrderEventOut]


class OrderSummaryOut(BaseModel):
    order_id: str
    order_number: str
    channel: str
    channel_reference: str
    customer_name: str | None
    customer_email: str | None
    customer_phone: str | None
    status: str
    on_hold: bool
    currency: str
    total: Decimal
    created_at: datetime


class OrderPage(BaseModel):
    items: list[OrderSummaryOut]
    next_cursor: str | None = Field(
        description="Pass as 'cursor' for the next page; null at the end"
    )


class CancellationOut(BaseModel):
    cancelled: int = Field(description="Units cancelled at once")
    cancel_requests: list[CancelRequestOut] = Field(
        description="Units already released: the fulfilling location must confirm these"
    )
    order: OrderOut


def _fulfillments(order: Order) -> list[FulfillmentOut]:
    by_location: dict[str, list[dict[str, Any]]] = {}
    for line in order.lines:
        for (state, location), quantity in sorted(line.buckets.items(), key=str):
            if location:
                by_location.setdefault(location, []).append(
                    {
                        "line_no": line.line_no,
                        "sku": line.sku,
                        "state": state.value,
                        "quantity": quantity,
                    }
                )
    return [
        FulfillmentOut(location_code=code, lines=lines)
        for code, lines in sorted(by_location.items())
    ]


# --- routes -------------------------------------------------------------------------------------


def _reasoned(principal: Principal, reason: str | None) -> str | None:
    """Care agents change orders on a customer's behalf: every change says why (history)."""
    if principal.role is Role.CARE_AGENT and not (reason or "").strip():
        raise InvalidOrder(
            "a care agent's order change needs a reason",
            errors=[field_error("#/reason", "required for care agents")],
        )
    return reason


@router.post(
    "",
    status_code=201,
    responses={200: {"description": "The channel reference was captured before: that order"}},
    summary="Capture an order from any channel",
)
def capture_order(
    body: OrderIn, services: ServicesDep, principal: Writer, response: Response
) -> OrderOut:
    captured = services.orders.capture(body.to_command(), principal=principal)
    if not captured.created:
        response.status_code = 200
    response.headers["Location"] = f"/orders/{captured.order.order_id}"
    return OrderOut.of(captured.order)


@router.get("", summary="Search orders (newest first, cursor pagination)")
def search_orders(
    services: ServicesDep,
    _: Reader,
    order_number: str | None = None,
    channel_reference: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    status: str | None = None,
    channel: Channel | None = None,
    location: Annotated[str | None, Query(description="Held, fulfilled or collected here")] = None,
    created_from: datetime | None = None,
    created_to: Annotated[datetime | None, Query(description="Exclusive")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OrderPage:
    page = services.order_queries.search(
        OrderSearch(
            order_number=order_number,
            channel_reference=channel_reference,
            email=email,
            phone=phone,
            status=status,
            channel=channel.value if channel else None,
            location_code=location,
            created_from=created_from,
            created_to=created_to,
        ),
        limit=limit,
        cursor=cursor,
    )
    return OrderPage(
        items=[OrderSummaryOut(**vars(item)) for item in page.items], next_cursor=page.next_cursor
    )


@router.get("/{order_id}", responses=NOT_FOUND, summary="An order with its timeline and events")
def get_order(order_id: str, services: ServicesDep, _: Reader) -> OrderDetailOut:
    order = services.orders.get(order_id)
    timeline, events = services.order_queries.history(order.order_id)
    return OrderDetailOut(
        **OrderOut.of(order).model_dump(),
        fulfillments=_fulfillments(order),
        timeline=[TimelineOut(**vars(entry)) for entry in timeline],
        events=[
            OrderEventOut(position=e.position, id=e.event_id, type=e.type, time=e.time, data=e.data)
            for e in events
        ],
    )


@router.post(
    "/{order_id}/cancellations",
    responses=CHANGE_RESPONSES,
    summary="Cancel the order, a line or part of a line",
)
def cancel_order(
    order_id: str, body: CancellationIn, services: ServicesDep, principal: Writer
) -> CancellationOut:
    result = services.orders.cancel(
        order_id,
        reason=body.reason,
        line_no=body.line_no,
        quantity=body.quantity,
        principal=principal,
    )
    return CancellationOut(
        cancelled=result.cancelled,
        cancel_requests=[CancelRequestOut.of(r) for r in result.requests],
        order=OrderOut.of(services.orders.get(order_id)),
    )


@router.post(
    "/{order_id}/cancel-requests/{request_id}/confirm",
    responses=CHANGE_RESPONSES,
    summary="The fulfilling location confirms a cancel request",
)
def confirm_cancel_request(
    order_id: str, request_id: str, body: DecisionIn, services: ServicesDep, principal: Fulfiller
) -> OrderOut:
    return OrderOut.of(
        services.orders.decide_cancel_request(
            order_id, request_id, confirm=True, reason=body.reason, principal=principal
        )
    )


@router.post(
    "/{order_id}/cancel-requests/{request_id}/refuse",
    responses=CHANGE_RESPONSES,
    summary="The fulfilling location refuses a cancel request",
)
def refuse_cancel_request(
    order_id: str, request_id: str, body: DecisionIn, services: ServicesDep, principal: Fulfiller
) -> OrderOut:
    return OrderOut.of(
        services.orders.decide_cancel_request(
            order_id, request_id, confirm=False, reason=body.reason, principal=principal
        )
    )


@router.post("/{order_id}/ship-address", responses=CHANGE_RESPONSES, summary="Change ship-to")
def change_ship_address(
    order_id: str, body: ShipAddressIn, services: ServicesDep, principal: Writer
) -> OrderOut:
    return OrderOut.of(
        services.orders.change_ship_address(
            order_id,
            body.address.to_domain(),
            line_nos=body.line_nos,
            reason=_reasoned(principal, body.reason),
            principal=principal,
        )
    )


@router.post(
    "/{order_id}/lines/{line_no}/pickup-location",
    responses=CHANGE_RESPONSES,
    summary="Change the store a line is collected at",
)
def change_pickup_location(
    order_id: str, line_no: int, body: PickupLocationIn, services: ServicesDep, principal: Writer
) -> OrderOut:
    return OrderOut.of(
        services.orders.change_pickup_location(
            order_id,
            line_no,
            body.location_code,
            reason=_reasoned(principal, body.reason),
            principal=principal,
        )
    )


@router.post(
    "/{order_id}/lines/{line_no}/delivery",
    responses=CHANGE_RESPONSES,
    summary="Switch a line's delivery (ship <-> pickup, ...)",
)
def change_delivery(
    order_id: str, line_no: int, body: DeliveryChangeIn, services: ServicesDep, principal: Writer
) -> OrderOut:
    return OrderOut.of(
        services.orders.change_delivery(
            order_id,
            line_no,
            body.delivery.to_domain(),
            reason=_reasoned(principal, body.reason),
            principal=principal,
        )
    )


@router.post("/{order_id}/lines", responses=CHANGE_RESPONSES, summary="Add a line")
def add_line(order_id: str, body: AddLineIn, services: ServicesDep, principal: Writer) -> OrderOut:
    return OrderOut.of(
        services.orders.add_line(
            order_id,
            body.line.to_domain(),
            reason=_reasoned(principal, body.reason),
            principal=principal,
        )
    )


@router.post(
    "/{order_id}/lines/{line_no}/quantity",
    responses=CHANGE_RESPONSES,
    summary="Change a line's quantity (before release)",
)
def change_quantity(
    order_id: str, line_no: int, body: QuantityIn, services: ServicesDep, principal: Writer
) -> OrderOut:
    return OrderOut.of(
        services.orders.change_quantity(
            order_id,
            line_no,
            body.quantity,
            reason=_reasoned(principal, body.reason),
            principal=principal,
        )
    )


@router.post(
    "/{order_id}/holds", status_code=201, responses=CHANGE_RESPONSES, summary="Place a hold"
)
def place_hold(order_id: str, body: HoldIn, services: ServicesDep, principal: Writer) -> HoldOut:
    return HoldOut.of(
        services.orders.place_hold(order_id, body.type, reason=body.reason, principal=principal)
    )


@router.post(
    "/{order_id}/holds/{hold_type}/release", responses=CHANGE_RESPONSES, summary="Release a hold"
)
def release_hold(
    order_id: str,
    hold_type: HoldType,
    body: HoldReleaseIn,
    services: ServicesDep,
    principal: Writer,
) -> HoldOut:
    return HoldOut.of(
        services.orders.release_hold(order_id, hold_type, reason=body.reason, principal=principal)
    )


@router.post(
    "/{order_id}/release",
    responses=CHANGE_RESPONSES,
    summary="Release the allocated units to their locations",
)
def release_order(order_id: str, services: ServicesDep, principal: Writer) -> OrderOut:
    services.orders.release(order_id, principal=principal)
    return OrderOut.of(services.orders.get(order_id))


@router.post(
    "/{order_id}/lines/{line_no}/quantity-moves",
    responses=CHANGE_RESPONSES,
    summary="Report fulfillment progress: move units between quantity states",
)
def move_quantity(
    order_id: str, line_no: int, body: QuantityMoveIn, services: ServicesDep, principal: Fulfiller
) -> OrderOut:
    return OrderOut.of(
        services.orders.move_quantity(
            order_id,
            line_no,
            body.quantity,
            source=body.from_state,
            target=body.to_state,
            location_code=body.location_code,
            reason=body.reason,
            principal=principal,
        )
    )


@router.post(
    "/backorders/allocations",
    summary="Allocate waiting lines of a SKU, first come first served (after supply arrived)",
)
def allocate_backorders(
    body: BackorderAllocationIn, services: ServicesDep, principal: Writer
) -> list[dict[str, Any]]:
    return services.orders.allocate_backorders(body.sku, principal=principal)
