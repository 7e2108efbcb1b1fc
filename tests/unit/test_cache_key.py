"""A step's code version (and so its cache key) sees every module inside steps/ the step imports."""

import shutil
from pathlib import Path

import pytest

import steps
from pipelines.cache_key import cache_key, pipeline_code_version, step_code_version, step_sources
from steps.common.residency import ResidencyPolicy
from steps.common.storage import ArtifactStore, StorageSettings


@pytest.fixture
def steps_copy(tmp_path: Path) -> Path:
    """A copy of steps/ to edit (the sources are hashed, nothing is imported from the copy)."""
    root = tmp_path / "steps"
    shutil.copytree(Path(steps.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + line, encoding="utf-8")


def test_the_judge_sees_the_grading_rules_it_imports_and_not_other_steps(steps_copy: Path) -> None:
    sources = {str(p.relative_to(steps_copy.parent)) for p in step_sources("steps.judge", steps_copy)}
    assert {"steps/__init__.py", "steps/judge/gate.py", "steps/common/__init__.py", "steps/common/grading.py",
            "steps/common/text.py", "steps/common/engines/base.py"} <= sources
    assert not any(s.startswith(("steps/ingest/", "steps/canary/", "steps/generate_qa/")) for s in sources)


def test_changing_a_module_the_judge_imports_changes_its_code_version_and_cache_key(
        steps_copy: Path, tmp_path: Path) -> None:
    store = ArtifactStore(StorageSettings(artifact_root=f"file://{tmp_path / 'store'}"), ResidencyPolicy())
    inputs = {"base_model": "embedded", "settings": {"max_items": 4}}
    judge_before, ingest_before = step_code_version("steps.judge", steps_copy), step_code_version("steps.ingest",
                                                                                                   steps_copy)
    key_before = cache_key("judge", judge_before, inputs, store)

    # The refusal rule lives in steps/common/grading.py, imported by the judge through its checks.
    _append(steps_copy / "common" / "grading.py", "\n# the refusal rule changed\n")
    judge_after = step_code_version("steps.judge", steps_copy)
    assert judge_after != judge_before
    assert cache_key("judge", judge_after, inputs, store) != key_before
    assert step_code_version("steps.ingest", steps_copy) == ingest_before  # ingest never imports it

    # A module no step imports changes only the whole pipeline's version.
    pipeline_before = pipeline_code_version(steps_copy)
    (steps_copy / "common" / "unused_helper.py").write_text("VALUE = 1\n")
    assert step_code_version("steps.judge", steps_copy) == judge_after
    assert pipeline_code_version(steps_copy) != pipeline_before


def test_imports_inside_functions_count(steps_copy: Path) -> None:
    before = step_code_version("steps.judge", steps_copy)
    (steps_copy / "common" / "late.py").write_text("VALUE = 1\n")
    _append(steps_copy / "judge" / "ranking.py", "\n\ndef _late():\n    from steps.common import late\n    return late\n")
    after = step_code_version("steps.judge", steps_copy)
    _append(steps_copy / "common" / "late.py", "VALUE = 2\n")
    assert step_code_version("steps.judge", steps_copy) not in (before, after)
