"""Time `eurolora compile` of the shipped pipeline, with its baselines measured in the same run.

    .venv/bin/python bench/compile.py [--repeat N] [--config CONFIG]

Rows: the cold CLI in a fresh process (what a user waits for; target under 1 s), the compile itself in
a warm process, and the import floors it cannot go below: `import hera` and `import hera.workflows`
(every step's IO models are Hera's, and importing any hera.workflows submodule runs the package's
__init__, which imports all of Hera's Argo models).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONFIG = ROOT / "pipelines" / "configs" / "cluster-example.yaml"
TIMEOUT_S = 120  # one cold process; far above the 1 s target, so only a hang reaches it


def _cold(argv: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=ROOT, timeout=TIMEOUT_S)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--config", type=Path, default=CONFIG)
    args = parser.parse_args()

    from pipelines.argo.compiler import compile_pipeline, to_yaml
    from pipelines.config import load_config
    from pipelines.spec import build_pipeline

    out = Path(tempfile.mkdtemp(prefix="eurolora-bench-"))
    rows = [
        ("python -c 'import hera'", _cold([sys.executable, "-c", "import hera"], args.repeat)),
        ("python -c 'import hera.workflows'", _cold([sys.executable, "-c", "import hera.workflows"], args.repeat)),
        ("eurolora compile (cold process)", _cold([sys.executable, "-m", "pipelines.cli", "compile", str(args.config),
                                                   "--out", str(out)], args.repeat)),
    ]
    config, pipeline = load_config(args.config), build_pipeline()
    compile_pipeline(config, pipeline)  # warm: step modules imported once, as in any process
    warm = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        compiled = compile_pipeline(config, pipeline)
        for obj in (compiled.template, compiled.workflow, compiled.cron):
            to_yaml(obj)
        warm.append(time.perf_counter() - start)
    rows.append(("compile_pipeline + YAML (in process)", warm))

    print(f"eurolora compile benchmark: shipped pipeline, {len(pipeline.nodes)} steps, "
          f"{len(compiled.template['spec']['templates'])} templates, median of {args.repeat}")
    print(f"{'what':<40} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, times in rows:
        print(f"{name:<40} {statistics.median(times):>9.3f} {min(times):>7.3f} {max(times):>7.3f}")
    cold = statistics.median(rows[2][1]) - statistics.median(rows[1][1])
    print(f"{'cold compile minus import hera.workflows':<40} {cold:>9.3f}")


if __name__ == "__main__":
    main()
