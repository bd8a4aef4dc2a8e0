"""A day of business played through the public HTTP API (``oms demo --simulate``).

The player is an HTTP client only: it captures the generator's orders (paid with ``tok_visa``),
releases them, lets the DCs and stores acknowledge, pick (a few short picks), pack, ship and
deliver, hands pickups over with their pickup code, turns a store dark at noon, takes a DC offline
for two hours (re-planning its open work), authorises a few returns, and at the end accounts for
every order it created: terminal, or waiting for a stated reason.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from oms.demo.generator import Order, Retailer

Say = Callable[[str], None]

TERMINAL = {"delivered", "collected", "cancelled", "returned"}
ACTIVE_FULFILLMENT = {
    "released",
    "acknowledged",
    "picked",
    "packed",
    "shipped",
    "in_transit",
    "received",
    "ready_for_pickup",
    "checked_in",
}
SHORT_PICK_EVERY = 29
RETURN_EVERY = 17


class SimulationFailed(RuntimeError):
    """The server refused something the player cannot explain."""


@dataclass
class Summary:
    orders: int = 0
    refused_orders: int = 0
    lines: int = 0
    units: int = 0
    units_fulfilled: int = 0
    split_orders: int = 0
    fulfillments: int = 0
    store_fulfillments: int = 0
    cost_total: Decimal = Decimal("0")
    costed_orders: int = 0
    late_promises: int = 0
    replans: int = 0
    outage_replans: int = 0
    short_picks: int = 0
    returns: int = 0
    events: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    waiting: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    stuck: dict[str, str] = field(default_factory=dict)

    @property
    def fill_rate(self) -> float:
        return self.units_fulfilled / self.units if self.units else 0.0

    @property
    def split_rate(self) -> float:
        return self.split_orders / self.orders if self.orders else 0.0

    @property
    def ship_from_store_share(self) -> float:
        return self.store_fulfillments / self.fulfillments if self.fulfillments else 0.0

    @property
    def average_cost(self) -> Decimal:
        if not self.costed_orders:
            return Decimal("0.00")
        return (self.cost_total / self.costed_orders).quantize(Decimal("0.01"))

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("orders", str(self.orders)),
            ("orders refused at capture", str(self.refused_orders)),
            ("lines", str(self.lines)),
            ("fill rate (units)", f"{self.fill_rate:.1%}"),
            ("split rate", f"{self.split_rate:.1%}"),
            ("ship-from-store share", f"{self.ship_from_store_share:.1%}"),
            ("average cost per order", str(self.average_cost)),
            ("late promises", str(self.late_promises)),
            ("re-plans", str(self.replans)),
            ("  of which for the DC outage", str(self.outage_replans)),
            ("short picks", str(self.short_picks)),
            ("returns", str(self.returns)),
            ("terminal orders", str(sum(n for s, n in self.statuses.items() if s in TERMINAL))),
            ("waiting orders", str(len(self.waiting))),
            ("blocked by a refused step", str(len(self.blocked))),
            ("stuck orders", str(len(self.stuck))),
        ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(env: dict[str, str], *, timeout: float = 60.0) -> Iterator[str]:
    """Start ``oms serve`` on a free port with ``env``, wait until it answers, stop it after."""
    port = free_port()
    log_path = Path(env.get("OMS_DATA_DIR", ".")) / "simulate-serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, "-m", "oms.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise SimulationFailed(f"oms serve exited: {log_path.read_text()[-500:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SimulationFailed("oms serve did not answer in time")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def pick_orders(retailer: Retailer, hours: int, limit: int) -> dict[int, list[Order]]:
    """The generator's orders for the played clock hours (from 00:00 for a whole day, else from
    08:00), following its time-of-day curve, at most ``limit`` of them."""
    start = 0 if hours >= 24 else 8
    clock_hours = [(start + h) % 24 for h in range(hours)]
    by_hour: dict[int, list[Order]] = {h: [] for h in clock_hours}
    taken = 0
    for scanned, order in enumerate(retailer.orders()):
        if taken >= limit or scanned >= 200_000:
            break
        hour = order.placed_at.hour
        if hour in by_hour:
            by_hour[hour].append(order)
            taken += 1
    return by_hour


class Player:
    def __init__(self, url: str, admin_key: str, retailer: Retailer, say: Say) -> None:
        self.retailer = retailer
        self.say = say
        admin = httpx.Client(base_url=url, headers={"X-API-Key": admin_key}, timeout=60)
        self.admin = admin
        self.shop = self._client(url, "simulated channels", "integration")
        self.floor = self._client(url, "simulated DCs and stores", "admin")
        self.customers = {c.customer_number: c for c in retailer.customers}
        self.order_ids: dict[str, str] = {}
        self.summary = Summary()
        self.offline: set[str] = set()
        self.picks = 0
        self.today = ""
        self.unreleased: list[str] = []
        # The server's last refusal of a step, per fulfillment (the reason it waits).
        self.refused: dict[str, str] = {}
        self.return_dc = next(loc.code for loc in retailer.locations if loc.type == "dc")
        self.types = {loc.code: loc.type for loc in retailer.locations}

    def _client(self, url: str, name: str, role: str) -> httpx.Client:
        created = self._ok(self.admin.post("/api-keys", json={"name": name, "role": role}))
        return httpx.Client(base_url=url, headers={"X-API-Key": created["api_key"]}, timeout=60)

    @staticmethod
    def _ok(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise SimulationFailed(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text[:300]}"
            )
        return response.json() if response.content else None

    def close(self) -> None:
        for client in (self.admin, self.shop, self.floor):
            client.close()

    # --- the day ----------------------------------------------------------------------------

    def capture(self, order: Order) -> None:
        customer = self.customers[order.customer_number]
        address = {
            "name": f"{customer.first_name} {customer.last_name}",
            "line1": customer.address.line1,
            "city": customer.address.city,
            "region": customer.address.region,
            "postal_code": customer.address.postal_code,
            "country": customer.address.country,
            "latitude": customer.latitude,
            "longitude": customer.longitude,
        }
        lines = []
        for line in order.lines:
            delivery: dict[str, Any] = {"method": order.delivery_method}
            if order.delivery_method in ("ship", "dropship"):
                delivery["address"] = address
            else:
                delivery["pickup_location_code"] = order.pickup_location_code
            lines.append(
                {
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price": str(line.unit_price),
                    "delivery": delivery,
                }
            )
        body = {
            "channel": order.channel,
            "channel_reference": order.order_number,
            "customer": {
                "customer_id": customer.customer_number,
                "name": address["name"],
                "email": customer.email,
            },
            "currency": order.currency,
            "lines": lines,
            "payments": [{"method": "card", "token": "tok_visa"}],
        }
        response = self.shop.post("/orders", json=body)
        if response.status_code in (409, 422):
            self.summary.refused_orders += 1
            self.summary.events.append(
                f"order {order.order_number} refused: {response.json().get('title')}"
            )
            return
        created = self._ok(response)
        self.order_ids[created["order_id"]] = order.order_number
        self.summary.orders += 1
        self.summary.lines += len(created["lines"])
        self.summary.units += sum(line["quantity"] for line in created["lines"])
        self.unreleased.append(created["order_id"])

    def release(self) -> None:
        """Release what the hour captured (the order's process may have done it already)."""
        for order_id in self.unreleased:
            response = self.floor.post("/fulfillments/releases", json={"order_id": order_id})
            if response.status_code not in (200, 201, 409):
                self._ok(response)
        self.unreleased = []

    def _step(self, f: dict[str, Any], step: str, body: dict[str, Any] | None = None) -> bool:
        response = self.floor.post(f"/fulfillments/{f['id']}/{step}", json=body or {})
        if response.status_code == 409:
            problem = response.json()
            where = f["destination_code"] if step == "receive" else f["location_code"]
            detail = problem.get("detail") or problem["title"]
            self.refused[f["id"]] = f"{step} at {where} refused: {detail}"
            return False
        self.refused.pop(f["id"], None)
        self._ok(response)
        return True

    def work(self, fid: str) -> None:
        """Take one fulfillment as far as the floor can today."""
        for _ in range(12):
            f = self._ok(self.floor.get(f"/fulfillments/{fid}"))
            status, method = f["status"], f["delivery_method"]
            if status not in ACTIVE_FULFILLMENT or f["location_code"] in self.offline:
                return
            if status == "released" and method in ("ship", "dropship"):
                if not self._step(f, "acknowledge"):
                    return
                continue
            if status in ("released", "acknowledged"):
                for line in f["lines"]:
                    if line["pick_confirmed"]:
                        continue
                    self.picks += 1
                    picked = line["quantity"]
                    body: dict[str, Any] = {"picked": picked}
                    if self.picks % SHORT_PICK_EVERY == 0:
                        body = {"picked": picked - 1, "reason": "not on the shelf"}
                        self.summary.short_picks += 1
                    self._step(f, f"lines/{line['line_no']}/pick", body)
                continue
            at_store_pickup = method in ("pickup", "curbside", "reserve_and_collect")
            if status == "picked" and at_store_pickup:
                if not self._step(f, "ready-for-pickup"):
                    return
            elif status == "picked":
                package = {
                    "package_id": f"PK-{f['id'][-8:]}",
                    "weight_kg": "1.5",
                    "length_cm": "40",
                    "width_cm": "30",
                    "height_cm": "20",
                    "lines": [
                        {"line_no": line["line_no"], "quantity": line["picked"]}
                        for line in f["lines"]
                        if line["picked"] > 0
                    ],
                }
                if not package["lines"] or not self._step(f, "pack", {"packages": [package]}):
                    return
            elif status == "packed":
                tracking = {p["package_id"]: f"1Z{p['package_id'][-8:]}" for p in f["packages"]}
                body = {"carrier": "UPS", "service": "ground", "tracking": tracking}
                if not self._step(f, "ship", body):
                    return
            elif status in ("shipped", "in_transit") and method == "ship_to_store":
                if not self._step(f, "receive"):
                    return
            elif status == "shipped":
                if not self._step(f, "deliver"):
                    return
            elif status == "received":
                if not self._step(f, "ready-for-pickup"):
                    return
            elif status == "ready_for_pickup" and method == "curbside":
                if not self._step(f, "check-in", {"bay": "2"}):
                    return
            elif status in ("ready_for_pickup", "checked_in"):
                if not self._step(f, "hand-over", {"pickup_code": f["pickup_code"]}):
                    return
            else:
                return

    def fulfillments_of(self, order_id: str) -> list[dict[str, Any]]:
        page = self._ok(self.floor.get("/fulfillments", params={"order_id": order_id}))
        items: list[dict[str, Any]] = page["items"]
        return items

    def work_all(self) -> None:
        for _ in range(3):  # short picks and re-plans release new fulfillments
            for order_id in self.order_ids:
                for f in self.fulfillments_of(order_id):
                    if f["status"] in ACTIVE_FULFILLMENT:
                        self.work(f["id"])

    def busiest(self, codes: set[str]) -> str | None:
        counts: Counter[str] = Counter()
        for order_id in self.order_ids:
            for f in self.fulfillments_of(order_id):
                if f["status"] in ACTIVE_FULFILLMENT and f["location_code"] in codes:
                    counts[f["location_code"]] += 1
        return counts.most_common(1)[0][0] if counts else None

    def set_status(self, code: str, status: str) -> None:
        self._ok(self.admin.patch(f"/locations/{code}", json={"status": status}))

    def outage(self, code: str, hour: int) -> None:
        self.set_status(code, "offline")
        self.offline.add(code)
        # The status change re-plans its allocated units; asking again finds nothing left.
        outcome = self._ok(self.admin.post(f"/sourcing/locations/{code}/replan"))
        self.summary.events.append(
            f"{hour:02d}:00 DC {code} offline (its allocated units re-planned; "
            f"{outcome.get('affected_orders', 0)} more on asking again)"
        )

    def returns(self) -> None:
        for n, order_id in enumerate(self.order_ids):
            if n % RETURN_EVERY:
                continue
            order = self._ok(self.shop.get(f"/orders/{order_id}"))
            line = next((li for li in order["lines"] if li["status"] == "delivered"), None)
            if line is None:
                continue
            response = self.shop.post(
                "/returns",
                json={
                    "order_id": order_id,
                    "method": "mail",
                    "location_code": self.return_dc,
                    "lines": [{"line_no": line["line_no"], "quantity": 1, "reason": "size_or_fit"}],
                },
            )
            if response.status_code == 201:
                self.summary.returns += 1
            else:
                self.summary.events.append(
                    f"return for {order['order_number']} refused: {response.text[:200]}"
                )

    # --- accounting -------------------------------------------------------------------------

    def account(self) -> None:
        s = self.summary
        for order_id, number in self.order_ids.items():
            order = self._ok(self.shop.get(f"/orders/{order_id}"))
            s.statuses[order["status"]] += 1
            fulfillments = self.fulfillments_of(order_id)
            s.fulfillments += len(fulfillments)
            locations = {f["location_code"] for f in fulfillments}
            store_types = {"store"}
            for f in fulfillments:
                if self._location_type(f["location_code"]) in store_types and f[
                    "delivery_method"
                ] in ("ship", "dropship"):
                    s.store_fulfillments += 1
            if len(locations) > 1:
                s.split_orders += 1
            for line in order["lines"]:
                done = sum(
                    q["quantity"]
                    for q in line["quantities"]
                    if q["state"] in ("shipped", "delivered", "collected", "returned")
                )
                s.units_fulfilled += done
                promised = line.get("promised_on")
                if promised and line["status"] not in TERMINAL and promised < self.today:
                    s.late_promises += 1
            sourcing = self._ok(self.shop.get(f"/orders/{order_id}/sourcing"))
            decisions = sourcing["decisions"]
            if decisions:
                s.cost_total += Decimal(str(decisions[-1]["cost"]))
                s.costed_orders += 1
            s.replans += sum(1 for d in decisions if d["trigger"] != "capture")
            s.outage_replans += sum(1 for d in decisions if d["trigger"] == "outage")
            if order["status"] in TERMINAL:
                continue
            blocked = [
                self.refused[f["id"]]
                for f in fulfillments
                if f["status"] in ACTIVE_FULFILLMENT and f["id"] in self.refused
            ]
            reason = self._why_waiting(order, fulfillments)
            if blocked and not reason:
                s.blocked[number] = "; ".join(blocked)
            elif reason:
                s.waiting[number] = reason
            else:
                s.stuck[number] = f"status {order['status']}"

    def _location_type(self, code: str) -> str:
        return self.types.get(code, "")

    def _why_waiting(self, order: dict[str, Any], fulfillments: list[dict[str, Any]]) -> str:
        if order["on_hold"]:
            return "on hold: " + ", ".join(h.get("type", "?") for h in order["holds"])
        active = [f for f in fulfillments if f["status"] in ACTIVE_FULFILLMENT]
        for f in active:
            if f["location_code"] in self.offline:
                return f"at {f['location_code']}, which is offline"
        states = {q["state"] for line in order["lines"] for q in line["quantities"]}
        if "backordered" in states:
            return "backordered: no location can serve a line now (future supply)"
        if "returned" in states or order["status"].startswith("partially_returned"):
            return "partly returned"
        if any(f["status"] == "ready_for_pickup" for f in fulfillments):
            return "waiting for the customer to collect"
        if states <= {"delivered", "collected", "cancelled", "returned"}:
            return "every unit delivered, collected or cancelled"
        return ""


def simulate(
    url: str,
    admin_key: str,
    retailer: Retailer,
    *,
    hours: int,
    speed: float | None,
    orders: int,
    say: Say,
) -> Summary:
    """Play ``hours`` of business against the server at ``url``; ``speed`` None is as fast as
    possible, N is N simulated seconds per real second."""
    plan = pick_orders(retailer, hours, orders)
    player = Player(url, admin_key, retailer, say)
    try:
        stores = [
            loc for loc in retailer.locations if loc.type == "store" and loc.status == "active"
        ]
        dcs = [loc for loc in retailer.locations if loc.type == "dc" and loc.status == "active"]
        clock_hours = list(plan)
        noon = 12 if 12 in clock_hours else clock_hours[len(clock_hours) // 2]
        outage_start = clock_hours[max(0, len(clock_hours) // 3)]
        outage_end = clock_hours[min(len(clock_hours) - 1, clock_hours.index(outage_start) + 2)]
        dark_store = stores[0].code if stores else None
        dc: str | None = None
        dc_codes = {loc.code for loc in dcs}
        for n, hour in enumerate(clock_hours):
            started = time.monotonic()
            if hour == noon and dark_store:
                player.set_status(dark_store, "dark")
                player.summary.events.append(f"{hour:02d}:00 store {dark_store} went dark")
            if hour == outage_end and dc and dc in player.offline and n > 0:
                player.set_status(dc, "active")
                player.offline.discard(dc)
                player.summary.events.append(f"{hour:02d}:00 DC {dc} back online")
            for order in plan[hour]:
                player.capture(order)
            if hour == outage_start and dcs and len(clock_hours) > 1:
                # After the hour's orders were released: the busiest DC goes offline and its
                # open work is re-planned.
                dc = player.busiest(dc_codes) or dcs[-1].code
                player.outage(dc, hour)
            player.release()
            player.work_all()
            say(
                f"{hour:02d}:00  orders {player.summary.orders}  "
                f"short picks {player.summary.short_picks}  offline {sorted(player.offline)}"
            )
            if speed:
                time.sleep(max(0.0, 3600 / speed - (time.monotonic() - started)))
        if dc and dc in player.offline:
            player.set_status(dc, "active")
            player.offline.discard(dc)
            player.summary.events.append(f"end of day: DC {dc} back online")
            player.work_all()
        player.returns()
        player.today = time.strftime("%Y-%m-%d", time.gmtime())
        player.account()
        return player.summary
    finally:
        player.close()
