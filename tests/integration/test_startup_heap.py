"""A started process (server, worker, CLI) takes its start-up objects out of the garbage
collector's generations, so that full collections during bulk work stay short."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from oms.cli.main import services_from_env


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process keeps collecting everything, as before


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_services_from_the_environment_freeze_what_start_up_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    monkeypatch.setenv("OMS_DATABASE_URL", f"sqlite:///{tmp_path / 'oms.db'}")
    assert gc.get_freeze_count() == 0
    services = services_from_env()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # modules, classes, SQLAlchemy's tables and statements
        # Garbage made afterwards is still collected.
        _Cycle()
        assert gc.collect() >= 1
        assert gc.get_freeze_count() == frozen
    finally:
        services.close()
