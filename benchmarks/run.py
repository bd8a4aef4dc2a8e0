"""Run every benchmark of the project, each in its own process, and print a summary.

    python benchmarks/run.py --size small            # what `make bench` does
    python benchmarks/run.py --only inventory,orders # what `make bench BENCH=...` does
    python benchmarks/run.py --list

A benchmark is ``benchmarks/<name>.py`` (not ``harness.py``, ``run.py`` or a name starting with
``_`` or ``test_``) that defines a top-level ``run`` function or has an ``if __name__ ==
"__main__"`` block. Each is started as ``python benchmarks/<name>.py --size S`` (without ``--size``
if its source mentions neither it nor ``harness.main``); it succeeds when it exits 0 and has written
``benchmarks/results/<name>.json`` (a JSON object) during this run. A crash, a non-zero
exit, a time-out or a missing result file fails that benchmark only; the others still run, and
the exit status is 1 if any failed. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parent
NOT_BENCHMARKS = frozenset({"harness", "run", "conftest", "__init__"})
SIZES = ("small", "medium", "large")
# Seconds one benchmark may take before it is stopped, per size.
DEFAULT_TIMEOUTS = {"small": 240, "medium": 1_800, "large": 7_200}
HEADLINE_FIGURES = 3
HEADLINE_MARKS = ("per_s", "p99", "p50", "_ms")


@dataclass
class Outcome:
    name: str
    ok: bool
    seconds: float
    reason: str = ""
    result_path: Path | None = None
    headline: str = ""


def is_benchmark(path: Path) -> bool:
    """A module with a top-level ``run`` function or a ``__main__`` block."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return True  # let it run and fail visibly rather than vanish from the list
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "run":
            return True
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return True
    return False


def discover(folder: Path = BENCHMARKS_DIR) -> list[str]:
    names = []
    for path in sorted(folder.glob("*.py")):
        name = path.stem
        if name in NOT_BENCHMARKS or name.startswith(("_", "test_")):
            continue
        if is_benchmark(path):
            names.append(name)
    return names


def takes_size(path: Path) -> bool:
    """Whether the program knows ``--size`` (the contract); older ones run at their own scale."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return True
    return "--size" in source or "harness.main(" in source


def _headline(document: dict[str, object]) -> str:
    figures = document.get("figures")
    if not isinstance(figures, dict):  # a result file of its own shape: all of it but the machine
        figures = {key: value for key, value in document.items() if key != "machine"}
    if str(BENCHMARKS_DIR) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS_DIR))
    from harness import flatten, format_value

    rows = list(flatten(figures))
    # Rates and latencies first: they are what a reader compares.
    rows.sort(key=lambda row: not any(mark in row[0] for mark in HEADLINE_MARKS))
    shown = [f"{key}={format_value(value)}" for key, value in rows[:HEADLINE_FIGURES]]
    return "\n".join(shown) + ("\n..." if len(rows) > HEADLINE_FIGURES else "")


def run_one(
    name: str,
    *,
    folder: Path,
    size: str,
    timeout: float,
    results: Path,
    env: dict[str, str],
) -> Outcome:
    script = folder / f"{name}.py"
    result_path = results / f"{name}.json"
    started_wall = time.time()
    started = time.perf_counter()
    sized = takes_size(script)
    note = "" if sized else "(takes no --size: ran at its own scale)\n"
    print(f"\n=== {name} ({size if sized else 'its own scale'}) ===", flush=True)
    # A session of its own, so that a time-out stops the benchmark and anything it started.
    process = subprocess.Popen(
        [sys.executable, str(script), *(["--size", size] if sized else [])],
        cwd=folder.parent,
        env=env,
        start_new_session=True,
    )
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return Outcome(
            name, False, time.perf_counter() - started, f"timed out after {timeout:.0f} s"
        )
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    seconds = time.perf_counter() - started
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return Outcome(name, False, seconds, how)
    if not result_path.exists() or result_path.stat().st_mtime < started_wall - 1:
        return Outcome(name, False, seconds, f"wrote no {result_path.name}")
    try:
        document = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return Outcome(name, False, seconds, f"unreadable {result_path.name}: {error}")
    if not isinstance(document, dict):
        return Outcome(name, False, seconds, f"{result_path.name} is not a JSON object")
    return Outcome(name, True, seconds, "", result_path, note + _headline(document))


def print_summary(outcomes: Sequence[Outcome], size: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"benchmarks ({size})")
    table.add_column("benchmark")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    table.add_column("figures / reason", overflow="fold")
    for outcome in outcomes:
        status = "[green]ok[/green]" if outcome.ok else "[red]FAILED[/red]"
        detail = outcome.headline if outcome.ok else outcome.reason
        table.add_row(outcome.name, status, f"{outcome.seconds:.1f}", detail)
    Console().print(table)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="Benchmark name(s) to run, comma-separated or repeated (default: all)",
    )
    parser.add_argument("--list", action="store_true", help="List the benchmarks and stop")
    parser.add_argument(
        "--timeout", type=float, help="Seconds per benchmark (default: by size, small 240)"
    )
    parser.add_argument(
        "--database-url",
        help="Database for the benchmarks (passed as OMS_BENCH_DATABASE_URL; "
        "default: that variable, else each benchmark's temporary SQLite file)",
    )
    parser.add_argument("--dir", type=Path, default=BENCHMARKS_DIR, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    folder: Path = arguments.dir.resolve()
    available = discover(folder)
    if arguments.list:
        print("\n".join(available))
        return 0
    wanted = [name.strip() for item in arguments.only for name in item.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in available]
    if unknown:
        print(
            f"run.py: unknown benchmark {', '.join(unknown)}: choose from {', '.join(available)}",
            file=sys.stderr,
        )
        return 2
    names = wanted or available
    if not names:
        print(f"run.py: no benchmarks in {folder}", file=sys.stderr)
        return 1
    env = dict(os.environ)
    if arguments.database_url:
        env["OMS_BENCH_DATABASE_URL"] = arguments.database_url
    results = Path(env.get("OMS_BENCH_RESULTS_DIR") or folder / "results")
    env["OMS_BENCH_RESULTS_DIR"] = str(results)
    timeout = arguments.timeout or DEFAULT_TIMEOUTS[arguments.size]
    started = time.perf_counter()
    outcomes = [
        run_one(name, folder=folder, size=arguments.size, timeout=timeout, results=results, env=env)
        for name in names
    ]
    print()
    print_summary(outcomes, arguments.size)
    failed = [outcome.name for outcome in outcomes if not outcome.ok]
    total = time.perf_counter() - started
    if failed:
        print(f"{len(failed)} of {len(outcomes)} failed: {', '.join(failed)} ({total:.0f} s)")
        return 1
    print(f"{len(outcomes)} benchmark(s) ok in {total:.0f} s; results in {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
