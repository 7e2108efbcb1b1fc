"""What every step pod runs: `python -m pipelines.argo.step_runner -e steps.<step>:run <inputs file>`.

This is Hera's runner (`python -m hera.workflows.runner`, same arguments, same input mapping and output
files) with one addition: a step raising TransientError exits with EXIT_TRANSIENT (75) instead of 1, so
the template's retryStrategy (`asInt(lastRetry.exitCode) == 75`) retries transient failures and nothing
else. The local runner maps TransientError the same way (pipelines/step_process.py).

No `from __future__ import annotations` here or in any step module: Hera's runner inspects annotations.
"""

import sys
import traceback


def main() -> None:
    from hera.workflows._runner.util import _run

    from steps.common.contract import EXIT_TRANSIENT, TransientError

    try:
        _run()  # Hera writes empty output placeholders before re-raising a step's exception
    except TransientError:
        traceback.print_exc()
        sys.stdout.flush()
        sys.exit(EXIT_TRANSIENT)


if __name__ == "__main__":
    main()
