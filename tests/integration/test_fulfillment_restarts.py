"""Killing the worker (SIGKILL) while it fires the timers of running pickup processes, and
killing the API server between steps: once restarted, every instance goes on from where it stood
and no step runs twice (one reminder and one cancellation per order, stock back exactly once)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from oms.adapters.clock import ControlledClock
from oms.adapters.db.engine import READ_ONLY
from oms.adapters.db.tables import process_history, process_timers
from oms.bootstrap import Services
from oms.domain.orders import DeliveryMethod
from oms.domain.processes import InstanceStatus
from tests.orders_support import an_order, at_store, line, order_network, put

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]
ORDERS = 60


def environment(services: Services, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    return {
        **clean,
        "OMS_DATABASE_URL": services.settings.resolved_database_url(),
        "OMS_DATA_DIR": str(services.settings.data_dir),
        "OMS_WORKER_POLL_SECONDS": "0.05",
        "OMS_LOG_LEVEL": "WARNING",
        **extra,
    }


def start_worker(services: Services) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "oms.cli", "worker"],
        env=environment(services),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def timers_in(services: Services, state: str) -> int:
    with services.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        return int(
            connection.execute(
                select(func.count()).where(process_timers.c.state == state)
            ).scalar_one()
        )


def completed_elements(services: Services) -> Counter[tuple[str, str]]:
    with services.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        rows = connection.execute(
            select(process_history.c.instance_id, process_history.c.element_id).where(
                process_history.c.kind == "element_completed"
            )
        ).all()
    return Counter((row[0], row[1]) for row in rows if row[1])


def ready_pickups(services: Services, count: int) -> list[str]:
    """``count`` click-and-collect orders, picked and ready, waiting at the hand-over."""
    order_ids = []
    for number in range(count):
        captured = services.orders.capture(
            an_order(
                line("BULB-03", 1, delivery=at_store(DeliveryMethod.PICKUP)),
                reference=f"R-{number}",
            )
        )
        order_ids.append(captured.order.order_id)
        [fulfillment] = services.fulfillments.for_order(captured.order.order_id)
        services.fulfillments.confirm_pick(fulfillment.id, 1, 1)
        services.fulfillments.ready_for_pickup(fulfillment.id)
    return order_ids


@pytest.mark.postgres
def test_a_worker_killed_while_firing_timers_continues_every_instance_once(
    services: Services, clock: ControlledClock
) -> None:
    # the orders are ten days old by the wall clock the worker reads: every timer is due
    clock.set(datetime.now(UTC) - timedelta(days=10))
    order_network(services)
    services.fulfillment_processes.deploy_defaults()
    put(services, "BULB-03", "S1", ORDERS)
    order_ids = ready_pickups(services, ORDERS)
    assert timers_in(services, "pending") == 2 * ORDERS

    worker = start_worker(services)
    try:
        wait_for(
            lambda: timers_in(services, "fired") >= 5,
            timeout=120,
            what="the worker to fire some timers",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    fired_before = timers_in(services, "fired")
    assert 0 < fired_before < 2 * ORDERS, "the kill did not land while timers were firing"

    worker = start_worker(services)
    try:
        wait_for(
            lambda: timers_in(services, "pending") == 0,
            timeout=180,
            what="the restarted worker to fire the rest",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    assert timers_in(services, "fired") == 2 * ORDERS
    assert timers_in(services, "failed") == 0
    reminders = services.events.read(types=["fulfillment.pickup_reminder_due"], limit=1000)
    assert Counter(e.data["order_id"] for e in reminders) == Counter(
        {order_id: 1 for order_id in order_ids}
    )
    cancelled = services.events.read(types=["fulfillment.cancelled"], limit=1000)
    assert Counter(e.data["order_id"] for e in cancelled) == Counter(
        {order_id: 1 for order_id in order_ids}
    )
    steps = completed_elements(services)
    for order_id in order_ids:
        [instance] = services.processes.instances_for(order_id)
        assert instance.status is InstanceStatus.COMPLETED
        assert steps[(instance.id, "SendReminder")] == 1
        assert steps[(instance.id, "CancelRemainder")] == 1
        assert services.orders.get(order_id).status == "cancelled"
    # every unit back on the shelf, once
    availability = services.inventory.item_availability("BULB-03", location_codes=["S1"])
    assert availability.total_atp == ORDERS
    assert [(p.on_hand, p.allocated) for p in availability.positions] == [(ORDERS, 0)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, services: Services, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oms.cli", "serve", "--port", str(port)],
            env=environment(services),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )

        def up() -> bool:
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, what="the server to start")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.mark.postgres
def test_a_server_killed_between_steps_goes_on_with_every_instance_after_restart(
    services: Services,
) -> None:
    order_network(services)
    services.fulfillment_processes.deploy_defaults()
    put(services, "LAMP-01", "DC-EAST", 10)
    key = services.access.create_key(name="ops", role="integration").secret
    headers = {"X-API-Key": key}
    port = free_port()

    def post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30)
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    server = Server(services, port)
    order_ids: list[str] = []
    fulfillments: dict[str, str] = {}
    try:
        for number in range(4):
            order = post(
                server.url,
                "/orders",
                {
                    "channel": "web",
                    "channel_reference": f"K-{number}",
                    "customer": {"name": "Ann", "email": "ann@example.com"},
                    "currency": "USD",
                    "lines": [
                        {
                            "sku": "LAMP-01",
                            "quantity": 1,
                            "unit_price": "10.00",
                            "delivery": {
                                "method": "ship",
                                "address": {
                                    "name": "Ann",
                                    "line1": "1 Main St",
                                    "city": "New York",
                                    "postal_code": "10001",
                                    "country": "US",
                                },
                            },
                        }
                    ],
                },
            )
            order_ids.append(order["order_id"])
            assert order["status"] == "released"  # by its process, in the capture
            [found] = services.fulfillments.for_order(order["order_id"])
            fulfillments[order["order_id"]] = found.id
            post(server.url, f"/fulfillments/{found.id}/lines/1/pick", {"picked": 1})
    finally:
        server.kill()

    server = Server(services, port)
    try:
        for order_id in order_ids:
            f_id = fulfillments[order_id]
            box = {"package_id": "P1", "weight_kg": "1", "length_cm": "10", "width_cm": "10",
                   "height_cm": "10", "lines": [{"line_no": 1, "quantity": 1}]}  # fmt: skip
            post(server.url, f"/fulfillments/{f_id}/pack", {"packages": [box]})
            post(
                server.url,
                f"/fulfillments/{f_id}/ship",
                {"carrier": "UPS", "service": "ground", "tracking": {"P1": f"1Z{order_id[:6]}"}},
            )
            post(server.url, f"/fulfillments/{f_id}/deliver", {})
    finally:
        server.kill()

    steps = completed_elements(services)
    for order_id in order_ids:
        [instance] = services.processes.instances_for(order_id)
        assert instance.status is InstanceStatus.COMPLETED
        for element in ("Source", "Release", "WaitShipped", "CapturePayment", "WaitDelivered"):
            assert steps[(instance.id, element)] == 1, element
        assert services.orders.get(order_id).status == "delivered"
    shipped = services.events.read(types=["fulfillment.shipped"], limit=100)
    assert sorted(e.data["order_id"] for e in shipped) == sorted(order_ids)
