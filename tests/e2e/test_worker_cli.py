"""``oms worker`` as an operator runs it: real processes, signals and exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oms.bootstrap import build_services
from oms.config import Settings
from oms.worker import JOBS, JobRegistry, PeriodicJob, periodic_job
from tests.events_support import OrderCreated, commit_events, webhook_receiver

pytestmark = pytest.mark.e2e
OMS = [sys.executable, "-m", "oms.cli"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    return {**clean, "OMS_DATA_DIR": str(tmp_path / "data"), "OMS_WORKER_POLL_SECONDS": "0.1"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_worker_once_relays_committed_events_to_webhooks(env: dict[str, str]) -> None:
    services = build_services(Settings(data_dir=Path(env["OMS_DATA_DIR"])))
    try:
        from oms.bootstrap import prepare_schema

        prepare_schema(services.engine)
        with webhook_receiver([]) as receiver:
            services.webhooks.create_subscription(
                name="shop", url=receiver.url, event_types=["order.created"], created_by="t"
            )
            commit_events(services, OrderCreated(order_number="ORD-CLI"))
            result = subprocess.run(
                [*OMS, "worker", "--once"], env=env, capture_output=True, text=True, timeout=60
            )
        assert result.returncode == 0, result.stderr
        assert [r.answered for r in receiver.received] == [200]
        assert b"ORD-CLI" in receiver.received[0].body
        assert '"message": "relayed events"' in result.stderr
    finally:
        services.close()


def test_worker_once_with_nats_unreachable_is_one_line_and_a_non_zero_exit(
    env: dict[str, str],
) -> None:
    env = {**env, "OMS_NATS_URL": f"nats://127.0.0.1:{closed_port()}"}
    result = subprocess.run(
        [*OMS, "worker", "--once"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("oms: events were not relayed: NATS at nats://127.0.0.1:")


def test_sigterm_stops_the_worker_gracefully_even_while_nats_is_down(
    env: dict[str, str],
) -> None:
    env = {**env, "OMS_NATS_URL": f"nats://127.0.0.1:{closed_port()}"}
    worker = subprocess.Popen(
        [*OMS, "worker"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert worker.stderr is not None
    lines = []
    for line in worker.stderr:  # wait until it is up
        lines.append(line)
        if '"worker started"' in line:
            break
    time.sleep(0.5)
    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(timeout=30)
    rest = worker.stderr.read()
    assert code == 0, rest
    assert time.monotonic() - stopped_at < 10
    assert '"message": "worker stopped"' in rest


def test_the_job_registry_refuses_twins_and_knows_the_default_jobs() -> None:
    assert {"webhooks.deliver_due", "idempotency.purge_expired"} <= set(JOBS.names())
    registry = JobRegistry()

    @periodic_job("tidy", every_seconds=60, registry=registry)
    def tidy(services: object) -> int:
        return 0

    assert [job.name for job in registry] == ["tidy"]
    with pytest.raises(ValueError, match="registered already"):
        registry.add(PeriodicJob(name="tidy", run=tidy))
    with pytest.raises(ValueError, match="positive"):
        registry.add(PeriodicJob(name="never", run=tidy, every_seconds=0))
