"""The benchmark harness's arithmetic and result file (benchmarks/harness.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.bench_support import harness


def test_percentiles_interpolate_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert harness.percentile(values, 0) == 1.0
    assert harness.percentile(values, 50) == 2.5
    assert harness.percentile(values, 95) == pytest.approx(3.85)
    assert harness.percentile(values, 100) == 4.0
    assert harness.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        harness.percentile([], 50)
    with pytest.raises(ValueError):
        harness.percentile(values, 101)


def test_summaries_are_in_milliseconds() -> None:
    summary = harness.summarize([0.001 * n for n in range(1, 101)])
    assert summary["count"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["min_ms"] == pytest.approx(1.0) and summary["max_ms"] == pytest.approx(100.0)


def test_time_calls_calls_warmup_plus_repeat_times() -> None:
    calls: list[int] = []
    summary = harness.time_calls(lambda: calls.append(1), repeat=5, warmup=2)
    assert len(calls) == 7 and summary["count"] == 5
    assert harness.rate(10, 2.0) == 5.0 and harness.rate(10, 0.0) == 0.0


def test_the_result_file_holds_figures_and_machine_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMS_BENCH_RESULTS_DIR", str(tmp_path))
    machine = harness.machine_facts(f"sqlite:///{tmp_path / 'x.db'}")
    path = harness.write_result(
        "example",
        size="small",
        figures={"reads_per_s": 1234.5, "latency": {"p99_ms": 2.0}},
        machine=machine,
        started_at=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
        duration_s=1.5,
        targets={"latency": {"p99_ms": "<= 5"}},
        notes="a note",
    )

    document = json.loads(path.read_text())
    assert path == tmp_path / "example.json"
    assert document["figures"]["latency"]["p99_ms"] == 2.0
    assert document["targets"] == {"latency": {"p99_ms": "<= 5"}}
    assert document["notes"] == ["a note"]
    facts = document["machine"]
    assert facts["cpu_count"] >= 1 and facts["cpu_model"]
    assert facts["python"].startswith("CPython") or facts["python"]
    assert facts["sqlalchemy"] and facts["database"]["backend"] == "sqlite"
    assert facts["database"]["version"]
    assert list(harness.flatten(document["figures"])) == [
        ("reads_per_s", 1234.5),
        ("latency.p99_ms", 2.0),
    ]


@pytest.mark.postgres
def test_machine_facts_name_the_postgresql_server_version(database_url: str) -> None:
    from sqlalchemy.engine import make_url

    facts = harness.database_facts(database_url)
    if database_url.startswith("sqlite"):
        assert facts["backend"] == "sqlite" and facts["version"][0].isdigit()
        return
    assert facts["backend"] == "postgresql"
    assert facts["version"][0].isdigit(), facts
    with_password = make_url(database_url).set(password="s3cret-word")
    shown = harness.database_facts(with_password.render_as_string(hide_password=False))["url"]
    assert "s3cret-word" not in shown and "***" in shown
