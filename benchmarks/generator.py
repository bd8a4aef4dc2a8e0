"""How fast the demo retailer is generated: records per second for each kind, per size.

    python benchmarks/generator.py --size small

Times building the network, catalogue and customers, streaming the inventory positions and the
order stream, and writing the whole data set as files; checks on the way that two runs with the
same seed write the same bytes (``byte_identical``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import harness
from oms.demo.generator import generate_retailer, shape_named, write_dataset

SEED = 20261129
# Timed runs per size: the figures are medians (p50) over these.
REPEATS = {"small": 5, "medium": 2, "large": 1}


def _one_run(size: str, out: Path) -> dict[str, Any]:
    with harness.stopwatch() as build:
        retailer = generate_retailer(SEED, size)
    with harness.stopwatch() as stock:
        positions = sum(1 for _ in retailer.positions())
    with harness.stopwatch() as replenish:
        supply = sum(1 for _ in retailer.supply())  # walks the positions again
    lines = 0
    with harness.stopwatch() as stream:
        orders = 0
        for order in retailer.orders():
            orders += 1
            lines += len(order.lines)
    with harness.stopwatch() as files:
        counts = write_dataset(retailer, out)
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "build_s": build.seconds,
        "built": len(retailer.locations) + len(retailer.items) + len(retailer.customers),
        "positions_s": stock.seconds,
        "positions": positions,
        "supply_s": replenish.seconds,
        "supply": supply,
        "orders_s": stream.seconds,
        "orders": orders,
        "order_lines": lines,
        "write_s": files.seconds,
        "rows_written": sum(counts.values()),
        "bytes_written": sum(path.stat().st_size for path in out.iterdir()),
        "digests": {name: entry["sha256"] for name, entry in manifest["files"].items()},
        "locations": len(retailer.locations),
        "items": len(retailer.items),
        "customers": len(retailer.customers),
    }


def run(size: str, database_url: str | None) -> dict[str, Any]:
    """Generate the retailer of this size a few times; report records/s per kind."""
    shape_named(size)  # an unknown size fails here, before any work
    runs = []
    with tempfile.TemporaryDirectory(prefix="oms-bench-generator-") as folder:
        for index in range(REPEATS[size]):
            runs.append(_one_run(size, Path(folder) / str(index)))

    def median(key: str) -> float:
        return harness.percentile([entry[key] for entry in runs], 50)

    first = runs[0]
    write_s = median("write_s")
    return {
        "seed": SEED,
        "repeats": len(runs),
        "counts": {
            "locations": first["locations"],
            "items": first["items"],
            "customers": first["customers"],
            "positions": first["positions"],
            "supply_lines": first["supply"],
            "orders": first["orders"],
            "order_lines": first["order_lines"],
        },
        "records_per_s": {
            "network_catalogue_customers": harness.rate(first["built"], median("build_s")),
            "positions": harness.rate(first["positions"], median("positions_s")),
            "positions_with_supply": harness.rate(first["positions"], median("supply_s")),
            "orders": harness.rate(first["orders"], median("orders_s")),
            "order_lines": harness.rate(first["order_lines"], median("orders_s")),
            "files_rows": harness.rate(first["rows_written"], write_s),
        },
        "write": {
            "seconds_p50": write_s,
            "seconds_max": max(entry["write_s"] for entry in runs),
            "megabytes": first["bytes_written"] / 1_000_000,
            "megabytes_per_s": harness.rate(first["bytes_written"] / 1_000_000, write_s),
        },
        "byte_identical": all(entry["digests"] == first["digests"] for entry in runs),
        "notes": [
            "byte_identical compares the SHA-256 of every file across the repeats "
            "(true by definition when there is one repeat)",
            "single-threaded pure Python; the database is not used",
        ],
    }


if __name__ == "__main__":
    raise SystemExit(harness.main("generator", run, uses_database=False))
