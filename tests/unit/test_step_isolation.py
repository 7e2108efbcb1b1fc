"""Steps are leaves: a step package imports only itself and steps/common, and steps/common imports no step.

What two steps share (an artifact's format, a grading rule, a registry tag) lives in steps/common, so a
change to it is seen by every step that uses it (and by each one's code version).
"""

import ast
from pathlib import Path

import steps

STEPS_ROOT = Path(steps.__file__).parent
SHARED = "common"


def _imported_packages(path: Path) -> set[str]:
    """The second component of every `steps.<package>...` module this file imports (any nesting)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from steps import judge` names the package in the imported names
            modules = ([f"steps.{a.name}" for a in node.names] if node.module == "steps" else [node.module])
        else:
            continue
        found.update(m.split(".")[1] for m in modules if m.startswith("steps.") and m.count(".") >= 1)
    return found


def _relative_imports(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]


def test_no_step_imports_another_step() -> None:
    packages = sorted(p.name for p in STEPS_ROOT.iterdir() if (p / "__init__.py").is_file())
    assert {"common", "ingest", "judge", "canary"} <= set(packages)
    violations = []
    for package in packages:
        allowed = {SHARED} if package == SHARED else {SHARED, package}
        for path in sorted((STEPS_ROOT / package).rglob("*.py")):
            rel = path.relative_to(STEPS_ROOT.parent)
            violations += [f"{rel} imports steps.{other}" for other in sorted(_imported_packages(path) - allowed)]
            violations += [f"{rel}:{line} uses a relative import (the scan needs absolute ones)"
                           for line in _relative_imports(path)]
    assert violations == []


def test_the_scan_sees_every_import_form(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text("import steps.judge.gate\nfrom steps.canary import flow\nfrom steps import promote\n"
                      "def f():\n    from steps.ingest.readers import read_file\n")
    assert _imported_packages(source) == {"judge", "canary", "promote", "ingest"}
