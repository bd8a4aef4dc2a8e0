"""``harness.served`` starts a real ``oms serve`` for HTTP benchmarks; ``harness.load`` drives it
with concurrent clients."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.bench_support import harness

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_served_oms_answers_concurrent_clients_and_stops(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    with harness.served(url) as server:
        clients = [httpx.Client(base_url=server.url, headers=server.headers) for _ in range(4)]

        def call(number: int) -> None:
            clients[number].get("/locations", params={"limit": 5}).raise_for_status()

        figures = harness.load(call, clients=4, calls_per_client=15)
        refused = httpx.get(f"{server.url}/locations", timeout=5)
        for client in clients:
            client.close()
        pid = server.pid

    assert figures["count"] == 60 and figures["errors"] == 0
    assert figures["calls_per_s"] > 0 and figures["p99_ms"] >= figures["p50_ms"] > 0
    assert refused.status_code == 401  # the key is needed, and the one made for us works
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_failed_calls_are_counted_not_fatal() -> None:
    def call(number: int) -> None:
        if number == 1:
            raise ValueError("no stock")

    figures = harness.load(call, clients=2, calls_per_client=3)
    assert figures["count"] == 3 and figures["errors"] == 3
    assert figures["first_error"] == "ValueError: no stock"
