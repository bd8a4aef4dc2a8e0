"""The ``oms`` command as an operator uses it: real processes, real exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
OMS = [sys.executable, "-m", "oms.cli"]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OMS, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    return {**clean, "OMS_DATA_DIR": str(tmp_path / "data")}


def test_version_and_help(env: dict[str, str]) -> None:
    version = run("--version", env=env)
    assert version.returncode == 0
    assert version.stdout.startswith("oms ")
    assert "serve" in run("--help", env=env).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuch",), "No such command"),
        (("apikey", "create", "--name", "x"), "Missing option '--role'"),
        (("apikey", "create", "--name", "x", "--role", "emperor"), "unknown role 'emperor'"),
        (("apikey", "create", "--name", "t", "--role", "store_associate"), "at least one location"),
        (("apikey", "revoke", "nokey"), "no API key 'nokey'"),
        (("serve", "--port", "99999"), "--port"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_a_non_zero_exit(
    args: tuple[str, ...], message: str, env: dict[str, str]
) -> None:
    result = run(*args, env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("oms: ")
    assert message in lines[0]


def test_keys_created_on_the_command_line_work_over_http(env: dict[str, str]) -> None:
    created = run("apikey", "create", "--name", "ops", "--role", "admin", env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("oms_")
    listed = run("apikey", "list", env=env)
    assert "ops" in listed.stdout
    assert secret not in listed.stdout
    assert "current" in run("db", "current", env=env).stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_upgrades_sqlite_and_becomes_ready(env: dict[str, str]) -> None:
    port = free_port()
    server = subprocess.Popen(
        [*OMS, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        unknown = httpx.get(f"http://127.0.0.1:{port}/nowhere", headers={"X-Request-ID": "r-1"})
        assert unknown.status_code == 404
        assert unknown.headers["x-request-id"] == "r-1"
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    log_lines = [line for line in stderr.decode().splitlines() if '"request_id": "r-1"' in line]
    assert log_lines, "the access log carries the request id as structured JSON"


def test_serve_on_an_out_of_date_postgresql_refuses_with_the_fix(
    postgres_engine,
    env: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    from sqlalchemy import text

    from tests.conftest import POSTGRES_URL

    with postgres_engine.begin() as connection:
        head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    try:
        result = run(
            "serve", "--port", str(free_port()), env={**env, "OMS_DATABASE_URL": POSTGRES_URL}
        )
    finally:
        with postgres_engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :h"), {"h": head})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "run 'oms db upgrade'" in result.stderr


def test_serve_with_several_workers_answers_from_worker_processes(env: dict[str, str]) -> None:
    created = run("apikey", "create", "--name", "ops", "--role", "admin", env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [*OMS, "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert ready.status_code == 200
        for number in range(6):
            listed = httpx.get(
                f"http://127.0.0.1:{port}/locations",
                headers={"X-API-Key": secret, "X-Request-ID": f"w-{number}"},
                timeout=10,
            )
            assert listed.status_code == 200, listed.text
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    logged = [line for line in stderr.decode().splitlines() if '"request_id": "w-' in line]
    assert logged, "each worker writes the structured access log"
