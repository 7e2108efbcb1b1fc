"""The CONFIG argument and `--set` overrides shared by every command that reads a config."""

import argparse
import sys
from pathlib import Path
from typing import Any


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", type=Path,
                        help="pipeline config YAML (default: the shipped local config)")
    # nargs="+" with "extend": `--set a=1 b=2` and `--set a=1 --set b=2` both collect every item.
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, e.g. --set finetune.max_steps=10 judge.max_new_tokens=64 "
                             "(repeatable; CONFIG goes before --set)")


def load_config_or_exit(args: argparse.Namespace, extra_overrides: list[str] | None = None,
                        local_run: bool = False) -> Any:
    """The validated config, or every problem printed and exit code 2. `local_run`: it runs on this
    machine (`eurolora run`), so its local paths must exist here."""
    from pipelines.config import ConfigError, load_config

    try:
        return load_config(args.config, [*(extra_overrides or []), *args.overrides], local_run=local_run)
    except ConfigError as exc:
        print(f"eurolora: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
