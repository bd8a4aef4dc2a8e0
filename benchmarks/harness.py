"""What every benchmark shares: timing, percentiles, machine facts, the result file and its table.

A benchmark is ``benchmarks/<name>.py`` with ``run(size, database_url) -> dict`` and, at its end::

    if __name__ == "__main__":
        raise SystemExit(harness.main("<name>", run))

``harness.main`` reads ``--size`` and ``--database-url`` from the command line, calls ``run``,
writes ``benchmarks/results/<name>.json`` (figures plus machine facts) and prints a table.
See ``benchmarks/README.md`` for the contract.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SIZES = ("small", "medium", "large")
BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCHMARKS_DIR.parent
# Reserved keys of what ``run`` returns: they are taken out of the figures.
RESERVED = ("targets", "notes")

RunFunction = Callable[[str, str | None], dict[str, Any]]


def results_dir() -> Path:
    """``benchmarks/results`` unless ``OMS_BENCH_RESULTS_DIR`` says otherwise."""
    return Path(os.environ.get("OMS_BENCH_RESULTS_DIR") or BENCHMARKS_DIR / "results")


def default_database_url() -> str | None:
    """``OMS_BENCH_DATABASE_URL``, or None: a benchmark then uses a temporary SQLite file."""
    return os.environ.get("OMS_BENCH_DATABASE_URL") or None


# --- timing -------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between the closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    below, above = math.floor(position), math.ceil(position)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Latency summary of durations in seconds, in milliseconds."""
    return {
        "count": len(seconds),
        "mean_ms": sum(seconds) / len(seconds) * 1000,
        "p50_ms": percentile(seconds, 50) * 1000,
        "p95_ms": percentile(seconds, 95) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "min_ms": min(seconds) * 1000,
        "max_ms": max(seconds) * 1000,
    }


@dataclass
class Stopwatch:
    """``with stopwatch() as watch: ...`` then ``watch.seconds``."""

    started: float = 0.0
    seconds: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    watch = Stopwatch(started=time.perf_counter())
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - watch.started


def time_calls(call: Callable[[], object], *, repeat: int, warmup: int = 0) -> dict[str, float]:
    """Call ``call`` ``warmup`` times untimed, then ``repeat`` times timed; summarize."""
    if repeat < 1:
        raise ValueError("repeat at least once")
    for _ in range(warmup):
        call()
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    return summarize(durations)


def rate(count: float, seconds: float) -> float:
    """Things per second (0 when nothing was timed)."""
    return count / seconds if seconds > 0 else 0.0


def load(call: Callable[[int], object], *, clients: int, calls_per_client: int) -> dict[str, Any]:
    """Run ``call(client_number)`` from ``clients`` threads, ``calls_per_client`` times each, all
    at once; latency summary of the calls that succeeded, throughput, and the errors."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    start_together = Barrier(clients)

    def client(number: int) -> tuple[list[float], list[str]]:
        durations: list[float] = []
        errors: list[str] = []
        start_together.wait()
        for _ in range(calls_per_client):
            started = time.perf_counter()
            try:
                call(number)
            except Exception as error:  # a failed call is counted, not fatal
                errors.append(f"{type(error).__name__}: {error}")
                continue
            durations.append(time.perf_counter() - started)
        return durations, errors

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        outcomes = list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - started
    durations = [d for done, _ in outcomes for d in done]
    errors = [e for _, failed in outcomes for e in failed]
    summary: dict[str, Any] = summarize(durations) if durations else {"count": 0}
    summary.update(
        clients=clients,
        calls_per_s=rate(len(durations), elapsed),
        errors=len(errors),
        first_error=errors[0] if errors else None,
    )
    return summary


# --- a real server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """A running ``oms serve``: its base URL and an admin API key for it."""

    url: str
    api_key: str
    pid: int

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(database_url: str, *, startup_timeout: float = 60.0) -> Iterator[Served]:
    """Start ``oms serve`` on a free local port against ``database_url`` (SQLite upgrades
    itself; PostgreSQL must be migrated), create an admin key for it, wait until it is ready,
    and stop it (and only it) on leaving the block."""
    import signal
    import tempfile
    import urllib.request

    data_dir = tempfile.mkdtemp(prefix="oms-bench-serve-")
    env = {
        **os.environ,
        "OMS_DATABASE_URL": database_url,
        "OMS_DATA_DIR": data_dir,
        "OMS_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "oms.cli"]
    created = subprocess.run(
        [*command, "apikey", "create", "--name", "benchmark", "--role", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=startup_timeout,
        check=False,
    )
    if created.returncode != 0:
        raise RuntimeError(f"could not create an API key: {created.stderr.strip()}")
    api_key = created.stdout.strip().splitlines()[-1]
    port = _free_port()
    log = Path(data_dir) / "serve.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"oms serve exited with {process.returncode}: {tail}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"oms serve was not ready within {startup_timeout:.0f} s")
            time.sleep(0.2)
        yield Served(url=url, api_key=api_key, pid=process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- machine facts ------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def database_facts(database_url: str | None) -> dict[str, Any]:
    """Backend and server version of the database a benchmark uses (the URL without password)."""
    if database_url is None:
        return {
            "backend": "sqlite",
            "version": sqlite3.sqlite_version,
            "url": "temporary SQLite file",
        }
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from oms.config import normalise_database_url

    url = make_url(normalise_database_url(database_url))
    facts: dict[str, Any] = {
        "backend": url.get_backend_name(),
        "url": url.render_as_string(hide_password=True),
    }
    if url.get_backend_name() == "sqlite":
        facts["version"] = sqlite3.sqlite_version
        return facts
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            facts["version"] = connection.execute(text("SHOW server_version")).scalar()
    except Exception as error:  # facts are best effort: the benchmark reports its own failure
        facts["version"] = f"unknown ({type(error).__name__})"
    finally:
        engine.dispose()
    return facts


def machine_facts(database_url: str | None, *, uses_database: bool = True) -> dict[str, Any]:
    """CPU, memory, versions and database: what a reader needs to compare two results."""
    import sqlalchemy

    try:
        from oms import __version__ as oms_version
    except ImportError:  # pragma: no cover - the benchmarks run in the project's environment
        oms_version = "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlalchemy": sqlalchemy.__version__,
        "oms": oms_version,
        "git_commit": _git_commit(),
        "database": database_facts(database_url) if uses_database else None,
    }


# --- results ------------------------------------------------------------------------------------


def write_result(
    name: str,
    *,
    size: str,
    figures: Mapping[str, Any],
    machine: Mapping[str, Any],
    started_at: datetime,
    duration_s: float,
    targets: Mapping[str, Any] | None = None,
    notes: Sequence[str] | str | None = None,
) -> Path:
    """Write ``<results>/<name>.json`` (atomically: a reader never sees half a file)."""
    document = {
        "benchmark": name,
        "size": size,
        "started_at": started_at.astimezone(UTC).isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 3),
        "figures": dict(figures),
        "targets": dict(targets or {}),
        "notes": [notes] if isinstance(notes, str) else list(notes or []),
        "machine": dict(machine),
    }
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def flatten(figures: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``("a.b", 1)``: nested figures as rows."""
    for key, value in figures.items():
        if isinstance(value, Mapping):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:,.3g}" if abs(value) < 1 else f"{value:,.2f}"
    return str(value)


def print_result(
    name: str, size: str, figures: Mapping[str, Any], targets: Mapping[str, Any] | None = None
) -> None:
    from rich.console import Console
    from rich.table import Table

    flat_targets = dict(flatten(targets or {}))
    table = Table(title=f"benchmark {name} ({size})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    if flat_targets:
        table.add_column("target", justify="right")
    for key, value in flatten(figures):
        row = [key, format_value(value)]
        if flat_targets:
            row.append(str(flat_targets.get(key, "")))
        table.add_row(*row)
    Console().print(table)


def main(
    name: str,
    run: RunFunction,
    argv: Sequence[str] | None = None,
    *,
    uses_database: bool = True,
) -> int:
    """The command line of one benchmark: ``python benchmarks/<name>.py --size small``."""
    parser = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=run.__doc__)
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument(
        "--database-url",
        default=default_database_url(),
        help="SQLAlchemy URL (default OMS_BENCH_DATABASE_URL, else a temporary SQLite file)",
    )
    arguments = parser.parse_args(argv)
    started_at = datetime.now(UTC)
    with stopwatch() as watch:
        outcome = dict(run(arguments.size, arguments.database_url))
    targets = outcome.pop("targets", None)
    notes = outcome.pop("notes", None)
    path = write_result(
        name,
        size=arguments.size,
        figures=outcome,
        machine=machine_facts(arguments.database_url, uses_database=uses_database),
        started_at=started_at,
        duration_s=watch.seconds,
        targets=targets,
        notes=notes,
    )
    print_result(name, arguments.size, outcome, targets)
    print(f"{name}: {watch.seconds:.1f} s, wrote {path}", file=sys.stderr)
    return 0
