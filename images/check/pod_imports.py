"""Run inside an image's environment (`python -I`, so only what the image installed is importable): import
the entry point of every template of the compiled WorkflowTemplate that runs on the image family.

`-m hera.workflows.runner -e module:function` is resolved as Hera's runner resolves it (import the
module, take the function); `-m module` imports the module. Usage: pod_imports.py FAMILY MANIFEST."""

import importlib
import sys
import time

import yaml


def entry_points(manifest: str, family: str) -> list[str]:
    """`module` or `module:function` of every template whose image is eurolora-<family>."""
    with open(manifest) as f:
        templates = yaml.safe_load(f)["spec"]["templates"]
    found = []
    for template in templates:
        body = template.get("script") or template.get("container") or {}
        if f"/eurolora-{family}:" not in body.get("image", ""):
            continue
        args = body["args"]
        if args[:2] == ["-m", "hera.workflows.runner"]:
            found.append(args[args.index("-e") + 1])
        elif args[0] == "-m":
            found.append(args[1])
        else:
            raise ValueError(f"template {template['name']}: {body['command']} {args} is not `python -m`")
    return found


def main() -> None:
    family, manifest = sys.argv[1:3]
    entries = sorted(set(entry_points(manifest, family)))
    if not entries:
        raise SystemExit(f"no template of {manifest} runs on eurolora-{family}")
    importlib.import_module("hera.workflows.runner")
    for entry in entries:
        started = time.monotonic()
        module, _, function = entry.partition(":")
        loaded = importlib.import_module(module)
        if function and not callable(getattr(loaded, function)):
            raise SystemExit(f"{entry}: not callable")
        print(f"images-check: {entry} imports ({time.monotonic() - started:.2f} s) from {loaded.__file__}")


if __name__ == "__main__":
    main()
