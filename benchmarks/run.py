"""Run every benchmark (or those named with --only), each as its own process.

Each ``benchmarks/<name>.py`` takes ``--size small|full``, prints a table and writes
``benchmarks/results/<name>.json``. ``make bench [SIZE=full] [BENCH=name]`` calls this.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["small", "full"], default="small")
    parser.add_argument("--only", action="append", default=[], help="benchmark name (repeat)")
    args = parser.parse_args()
    names = sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("run", "__init__"))
    unknown = sorted(set(args.only) - set(names))
    if unknown:
        print(f"no benchmark named {', '.join(unknown)} (have: {', '.join(names)})")
        return 2
    failed = []
    for name in args.only or names:
        print(f"== {name} ({args.size})", flush=True)
        done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), "--size", args.size])
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
