"""Run every benchmark in bench/ in turn (``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "command_bench.py",
    "load_bench.py",
    "projection_bench.py",
    "api_bench.py",
    "telemetry_bench.py",
    "relay_bench.py",
    "load_test.py",
]

if __name__ == "__main__":
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)], cwd=HERE).returncode:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
