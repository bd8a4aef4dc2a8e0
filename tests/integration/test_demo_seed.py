"""Seeding the demo retailer is idempotent: a second run adds nothing."""

from __future__ import annotations

from oms.bootstrap import Services
from oms.config import Settings
from oms.demo import seed_demo


def test_seeding_twice_keeps_one_demo_admin_key(services: Services, settings: Settings) -> None:
    first = seed_demo(services, settings)
    second = seed_demo(services, settings)

    demo_keys = [key for key in services.access.list_keys() if key.name == "demo admin"]
    assert len(demo_keys) == 1
    assert first == second
    secret = (settings.data_dir / "demo-admin.key").read_text().strip()
    assert any(secret in line for line in first)
