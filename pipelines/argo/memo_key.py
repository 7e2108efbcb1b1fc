"""The memoization key of a step, computed in a small pod before the step runs.

Argo memoizes on a string key. Keyed on the raw parameters, a step would hit its cache although the
corpus behind an unchanged `s3://` prefix changed, and miss it whenever the run id (inside the runtime
context and inside every upstream URI) changed. So the key is computed here exactly as the local runner
computes it (pipelines/cache_key.py): URIs replaced by the digests of what they hold (manifest digest of
a published artifact, listing digest of a raw prefix), run id and scratch dir dropped, plus the step's
code version. The step template memoizes on `{{inputs.parameters.memo-key}}` set from this pod's output.

    python -m pipelines.argo.memo_key --step NAME --code-version V --context-param context INPUTS_FILE
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipelines.argo.constants import MEMO_KEY_PARAM, MEMO_KEY_PATH


def _decode(value: str) -> Any:
    """Parameters arrive as strings: JSON objects and lists are decoded, anything else kept as text."""
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def compute_key(step: str, code_version: str, params: dict[str, str], context_param: str) -> str:
    from pipelines.cache_key import cache_key
    from steps.common.contract import RuntimeContext

    context = RuntimeContext.model_validate_json(params[context_param])
    inputs = {("context" if name == context_param else name): _decode(value)
              for name, value in params.items() if name != MEMO_KEY_PARAM}
    return cache_key(step, code_version, inputs, context.store())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.argo.memo_key")
    parser.add_argument("--step", required=True)
    parser.add_argument("--code-version", required=True)
    parser.add_argument("--context-param", required=True)
    parser.add_argument("--out", default=MEMO_KEY_PATH)
    parser.add_argument("inputs", type=Path, help="Argo's {{inputs.parameters}} as JSON")
    args = parser.parse_args(argv)
    items = json.loads(args.inputs.read_text() or "[]") or []
    params = {item["name"]: str(item.get("value", "")) for item in items}
    from pydantic import ValidationError

    from steps.common.contract import EXIT_TRANSIENT
    from steps.common.residency import ResidencyError

    try:
        key = compute_key(args.step, args.code_version, params, args.context_param)
    except (ResidencyError, ValidationError, KeyError) as exc:
        print(f"memo key of {args.step}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - storage unreachable: transient, retried by Argo
        print(f"memo key of {args.step}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_TRANSIENT
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(key)
    print(json.dumps({"step": args.step, "memo_key": key}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
