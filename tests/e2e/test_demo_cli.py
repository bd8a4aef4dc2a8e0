"""``oms demo generate`` through the command line, as an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oms.demo.generator import DATASET_FILES

pytestmark = pytest.mark.e2e


def oms(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    if data_dir is not None:
        env["OMS_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "oms.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_demo_seeds_the_retailer_once_and_prints_a_working_key(tmp_path: Path) -> None:
    first = oms("demo", "--no-serve", data_dir=tmp_path)
    second = oms("demo", "--no-serve", data_dir=tmp_path)

    assert first.returncode == 0, first.stderr
    assert "seeded now" in first.stdout and "added 33 locations, 300 items" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "already there" in second.stdout and "added 0 locations, 0 items" in second.stdout
    secret = (tmp_path / "demo-admin.key").read_text().strip()
    assert secret in first.stdout and secret in second.stdout

    wrong = oms("demo", "--no-serve", "--size", "huge", data_dir=tmp_path)
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "oms: unknown size 'huge': use one of small, medium, large"


def test_generate_writes_the_same_bytes_for_the_same_seed(tmp_path: Path) -> None:
    first = oms("demo", "generate", "--seed", "5", "--size", "small", "--out", str(tmp_path / "a"))
    second = oms("demo", "generate", "--seed", "5", "--out", str(tmp_path / "b"))

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "positions.csv" in first.stdout
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["size"] == "small"
    for name in (*DATASET_FILES, "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_generate_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    unknown = oms("demo", "generate", "--size", "huge", "--out", str(tmp_path / "x"))
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == ("oms: unknown size 'huge': use one of small, medium, large")
    assert not (tmp_path / "x").exists()

    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    clash = oms("demo", "generate", "--out", str(a_file))
    assert clash.returncode == 1
    assert clash.stderr.strip() == f"oms: {a_file} exists and is not a directory"

    negative = oms("demo", "generate", "--seed", "-1", "--out", str(tmp_path / "y"))
    assert negative.returncode == 2
    assert negative.stderr.count("\n") == 1 and "--seed" in negative.stderr
