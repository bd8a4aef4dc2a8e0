"""``oms demo --simulate``: a short day played through a real ``oms serve`` on SQLite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def figure(output: str, name: str) -> str:
    found = re.search(rf"│ {re.escape(name)}\s*│\s*([^│]+?)\s*│", output)
    assert found, f"no {name!r} in the summary:\n{output}"
    return found.group(1)


def test_a_short_simulated_day_accounts_for_every_order(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    env["OMS_DATA_DIR"] = str(tmp_path)
    env["COLUMNS"] = "200"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "oms.cli",
            "demo",
            "--no-serve",
            "--simulate",
            "--hours",
            "2",
            "--speed",
            "max",
            "--orders",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout

    orders = int(figure(out, "orders"))
    terminal = int(figure(out, "terminal orders"))
    waiting = int(figure(out, "waiting orders"))
    assert orders > 0
    assert int(figure(out, "lines")) >= orders
    assert int(figure(out, "stuck orders")) == 0
    assert "STUCK" not in out
    # Every order it created is accounted for: terminal, or waiting with a stated reason.
    assert terminal + waiting == orders
    reasons = re.findall(r"^waiting: \S+: (.+)$", out, flags=re.MULTILINE)
    assert len(reasons) == waiting and all(reason.strip() for reason in reasons)
    fill = float(figure(out, "fill rate (units)").rstrip("%"))
    assert 0 < fill <= 100
    assert float(figure(out, "average cost per order")) > 0
    if int(figure(out, "short picks")):
        # A short pick gives the units back to be sourced again: a re-plan decision.
        assert int(figure(out, "re-plans")) >= 1
    # The day's events happened through the API.
    assert re.search(r"store \S+ went dark", out)
    assert re.search(r"DC \S+ offline", out) and re.search(r"DC \S+ back online", out)


def test_a_bad_speed_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    env["OMS_DATA_DIR"] = str(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "oms.cli", "demo", "--no-serve", "--simulate", "--speed", "fast"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.strip() == "oms: speed 'fast': use max or a number"
