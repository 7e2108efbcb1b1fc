"""Local pipeline wall time by step: a cold run with caching off (the baseline), then the same run again
with caching on and nothing changed. Prints one table; targets: cold <= 10 min, cached <= 5% of cold.

    .venv/bin/python bench/pipeline_local.py [--work DIR] [--set key=value ...]

With --work the runs stay in DIR (an empty or new folder) for reading their results; by default a temporary
folder is removed after.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(work: Path, label: str, extra: list[str]) -> tuple[float, dict[str, dict]]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", *extra], cwd=work,
                            capture_output=True, text=True, check=False, timeout=3600)
    wall = time.monotonic() - started
    (work / f"{label}.log").write_text(result.stdout + result.stderr)  # the run's own summary tables
    if result.returncode != 0:
        sys.exit(f"run failed:\n{result.stderr[-3000:]}")
    newest = max((work / "runs").glob("2*/summary.json"))
    steps = {s["name"]: s for s in json.loads(newest.read_text())["steps"]}
    return wall, steps


def machine() -> str:
    """Cores and the torch threads a step process gets (steps run in their own processes, same environment)."""
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True, timeout=120)
    return (f"{os.cpu_count()} CPU cores ({len(os.sched_getaffinity(0))} usable by this process), "
            f"torch threads per step {probe.stdout.strip()} "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--work", type=Path, help="keep the runs in this folder (must be empty or new)")
    args = parser.parse_args()
    extra = [f"--set={item}" for item in args.overrides]
    if args.work and args.work.exists() and any(args.work.iterdir()):
        sys.exit(f"--work {args.work}: not empty (a registry there would make the run compare with its champion)")
    with tempfile.TemporaryDirectory(prefix="eurolora-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cold_wall, cold = _run(work, "cold", ["--no-cache", *extra])
        warm_wall, warm = _run(work, "cached", extra)
    print(machine())
    print(f"{'step':<15}{'cache off (s)':>15}{'cache on (s)':>15}{'status':>12}")
    for name, step in cold.items():
        print(f"{name:<15}{step['duration_s']:>15.1f}{warm[name]['duration_s']:>15.1f}{warm[name]['status']:>12}")
    print(f"{'whole run':<15}{cold_wall:>15.1f}{warm_wall:>15.1f}{warm_wall / cold_wall:>11.1%}")


if __name__ == "__main__":
    main()
