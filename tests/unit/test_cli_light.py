"""`eurolora --help` and every command's help never import torch or any other heavy library."""

import json
import subprocess
import sys

import pytest

from pipelines.cli import build_parser

HEAVY = ("torch", "transformers", "peft", "trl", "mlflow", "vllm", "xgrammar")
PROBE = """
import json, sys
from pipelines.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy})))
"""


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["compile", "--help"], ["serve", "--help"],
                                  ["submit", "--help"], ["restore", "--help"]])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    code = PROBE.format(heavy=set(HEAVY))
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False,
                            timeout=60)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"eurolora {' '.join(argv)} imported {loaded}"


def test_every_command_is_registered() -> None:
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert {"run", "compile", "submit", "status", "logs", "serve", "restore"} <= commands


def test_set_takes_several_overrides_at_once_and_repeats() -> None:
    args = build_parser().parse_args(["run", "cfg.yaml", "--set", "a.b=1", "c=x y", "--set", "d=2", "--until", "ingest"])
    assert (str(args.config), args.overrides, args.until) == ("cfg.yaml", ["a.b=1", "c=x y", "d=2"], "ingest")
