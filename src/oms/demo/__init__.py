"""The demo retailer: what ``oms demo`` seeds before it serves.

Seeding is idempotent: running it again adds nothing that is already there.
"""

from __future__ import annotations

from oms.bootstrap import Services
from oms.config import Settings
from oms.domain.access import Role


def seed_demo(services: Services, settings: Settings) -> list[str]:
    """Seed the demo data and return lines for the operator to read."""
    lines: list[str] = []
    key_file = settings.data_dir / "demo-admin.key"
    existing = {key.name for key in services.access.list_keys() if key.revoked_at is None}
    if "demo admin" not in existing or not key_file.exists():
        created = services.access.create_key(name="demo admin", role=Role.ADMIN)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(created.secret + "\n")
        key_file.chmod(0o600)
    lines.append(f"demo admin API key (also in {key_file}): {key_file.read_text().strip()}")
    lines.append(
        'try: curl -H "X-API-Key: $(cat ' + str(key_file) + ')" http://127.0.0.1:8000/events'
    )
    return lines
