"""Runs every benchmark in turn (``make bench``); pass --quick for a smoke run.

Each script prints its own Markdown tables and writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["sampler_overhead.py", "train_speed.py", "train_quality.py", "checkerboard_gap.py", "digits_quality.py",
           "digits_inverse.py", "sampler_efficiency.py"]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    failed = []
    for name in SCRIPTS:
        path = HERE / name
        if not path.is_file():
            continue
        print(f"\n## {name}\n", flush=True)
        if subprocess.run([sys.executable, str(path), *args]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
