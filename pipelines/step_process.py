"""Runs one step in its own process, as a pod would: `python -m pipelines.step_process ENTRY IN OUT`.

It validates the inputs into the step's Input model, calls the same `run()` Hera's runner calls in a
container, and writes the outputs atomically. A step's `run` is wrapped in `@transient_exit`, so a
TransientError leaves this process with exit code 75 (a transient failure worth retrying), exactly as
in a pod; any other exception exits 1.
"""

import importlib
import logging
import os
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    entrypoint, inputs_path, outputs_path = argv
    module_name, func_name = entrypoint.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    inputs_model = next(iter(func.__annotations__.values()))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        outputs = func(inputs_model.model_validate_json(Path(inputs_path).read_text()))
    except Exception:  # noqa: BLE001 - the step's own failure: report it and exit non-zero
        traceback.print_exc()
        return 1
    target = Path(outputs_path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(outputs.model_dump_json(indent=2))
    os.replace(tmp, target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
