"""``benchmarks/run.py``: each benchmark in its own process; a failing one stops no other."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

GOOD = """
import harness

def run(size, database_url):
    return {"things_per_s": 42.0, "size_seen": size, "url_seen": database_url}

if __name__ == "__main__":
    raise SystemExit(harness.main("{name}", run))
"""
CRASHES = """
def run(size, database_url):
    raise RuntimeError("boom")

if __name__ == "__main__":
    run("small", None)
"""
WRITES_NOTHING = """
if __name__ == "__main__":
    print("I forgot to write my result")
"""
HANGS = """
import time

def run(size, database_url):
    time.sleep(600)

if __name__ == "__main__":
    run("small", None)
"""
LEGACY = """
import json, os, sys
from pathlib import Path

# an older program: no size option, a result file of its own shape
if __name__ == "__main__":
    assert len(sys.argv) == 1, sys.argv
    folder = Path(os.environ["OMS_BENCH_RESULTS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "legacy.json").write_text(json.dumps({"orders_per_second": 12.5}))
"""
HELPER = """
def shared_helper():
    return 1
"""


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    shutil.copy(BENCHMARKS / "harness.py", folder)
    shutil.copy(BENCHMARKS / "run.py", folder)
    (folder / "alpha.py").write_text(GOOD.replace("{name}", "alpha"))
    (folder / "crashes.py").write_text(CRASHES)
    (folder / "silent.py").write_text(WRITES_NOTHING)
    (folder / "zeta.py").write_text(GOOD.replace("{name}", "zeta"))
    (folder / "_common.py").write_text(HELPER)
    (folder / "helpers.py").write_text(HELPER)  # no run(), no __main__: not a benchmark
    return folder


def runner(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_BENCH_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, str(folder / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_every_benchmark_runs_and_failures_are_reported_not_fatal(bench_dir: Path) -> None:
    done = runner(bench_dir, "--size", "small", "--database-url", "sqlite:///x.db")

    assert done.returncode == 1, done.stdout + done.stderr
    summary = done.stdout
    assert "2 of 4 failed: crashes, silent" in summary
    assert "exit status 1" in summary and "wrote no silent.json" in summary
    assert "RuntimeError: boom" in done.stderr
    for name in ("alpha", "zeta"):  # zeta runs after the failures
        document = json.loads((bench_dir / "results" / f"{name}.json").read_text())
        assert document["benchmark"] == name and document["size"] == "small"
        assert document["figures"] == {
            "things_per_s": 42.0,
            "size_seen": "small",
            "url_seen": "sqlite:///x.db",
        }
        assert document["machine"]["database"]["backend"] == "sqlite"
    assert not (bench_dir / "results" / "helpers.json").exists()


def test_a_program_without_sizes_runs_at_its_own_scale(bench_dir: Path) -> None:
    (bench_dir / "legacy.py").write_text(LEGACY)

    done = runner(bench_dir, "--only", "legacy", "--size", "medium")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "takes no --size" in done.stdout and "orders_per_second=12.50" in done.stdout


def test_only_runs_the_named_benchmarks_and_lists_what_exists(bench_dir: Path) -> None:
    listed = runner(bench_dir, "--list")
    assert listed.stdout.split() == ["alpha", "crashes", "silent", "zeta"]

    only = runner(bench_dir, "--only", "zeta", "--size", "medium")
    assert only.returncode == 0, only.stdout + only.stderr
    assert "1 benchmark(s) ok" in only.stdout
    assert json.loads((bench_dir / "results" / "zeta.json").read_text())["size"] == "medium"
    assert not (bench_dir / "results" / "alpha.json").exists()

    unknown = runner(bench_dir, "--only", "alpha,nope")
    assert unknown.returncode == 2
    assert "unknown benchmark nope" in unknown.stderr


def test_a_stale_result_file_does_not_pass_for_a_new_one(bench_dir: Path) -> None:
    results = bench_dir / "results"
    results.mkdir()
    (results / "silent.json").write_text('{"figures": {}}')
    os.utime(results / "silent.json", (1_000_000_000, 1_000_000_000))

    done = runner(bench_dir, "--only", "silent")
    assert done.returncode == 1
    assert "wrote no silent.json" in done.stdout


def test_a_hanging_benchmark_is_stopped_at_its_time_out(bench_dir: Path) -> None:
    (bench_dir / "hangs.py").write_text(HANGS)

    done = runner(bench_dir, "--only", "hangs,alpha", "--timeout", "3")
    assert done.returncode == 1
    assert "timed out after 3 s" in done.stdout
    assert (bench_dir / "results" / "alpha.json").exists()


def test_the_generator_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_BENCH_")}
    env["OMS_BENCH_RESULTS_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--only", "generator", "--size", "small"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((tmp_path / "generator.json").read_text())
    figures = document["figures"]
    assert figures["byte_identical"] is True
    assert figures["counts"]["positions"] > 0
    assert all(value > 0 for value in figures["records_per_s"].values())
    assert document["machine"]["cpu_count"] >= 1
