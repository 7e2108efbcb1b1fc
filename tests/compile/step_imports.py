"""The third-party modules a pipeline node imports when its pod runs, found statically (AST, no import):
every `import` reachable from the step package, at module level or inside functions, through the
project's own modules. One dispatch is configuration, not code: `steps.common.engines.make_engine`
imports the engine its settings name, so its body is replaced by the engines the node's config bindings
select (EngineSettings found in the bound config values)."""

import ast
import sys
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipelines.spec import FromConfig, Node

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("steps", "pipelines")
ENGINE_DISPATCH = ("steps.common.engines", "make_engine")
ENGINE_MODULES = {"transformers": "steps.common.engines.transformers_engine", "vllm": "steps.common.engines.vllm_engine",
                  "openai": "steps.common.engines.openai_engine"}


def _module_file(module: str) -> Path | None:
    path = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@cache
def _imports_of(module: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(first-party modules, third-party top-level names) one module imports, dispatch body excluded."""
    tree = ast.parse(_module_file(module).read_text())  # type: ignore[union-attr]
    skipped: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and (module, fn.name) == ENGINE_DISPATCH:
            skipped.update(id(n) for n in ast.walk(fn))
    first, third = [], []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            top = name.split(".")[0]
            if top in FIRST_PARTY:
                if _module_file(name):
                    first.append(name)
            elif top not in sys.stdlib_module_names:
                third.append(top)
    return tuple(first), tuple(third)


def third_party_imports(*entry_modules: str) -> set[str]:
    seen: set[str] = set()
    found: set[str] = set()
    todo = list(entry_modules)
    while todo:
        module = todo.pop()
        if module in seen or _module_file(module) is None:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # a module's packages run first
        first, third = _imports_of(module)
        todo += first
        found.update(third)
    return found


def _engine_kinds(value: Any) -> set[str]:
    from steps.common.engines.base import EngineSettings

    if isinstance(value, EngineSettings):
        return {value.kind}
    if isinstance(value, BaseModel):
        return {k for name in type(value).model_fields for k in _engine_kinds(getattr(value, name))}
    return set()


def node_imports(node: Node, config: Any) -> set[str]:
    """What `node`'s pod imports with `config`: its step package and the engines its settings select."""
    kinds = {k for b in node.bindings.values() if isinstance(b, FromConfig) for k in _engine_kinds(config.get(b.path))}
    return third_party_imports(node.module, *(ENGINE_MODULES[k] for k in sorted(kinds)))
