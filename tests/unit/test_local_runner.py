"""The local runner on a toy pipeline: real subprocesses, real artifact store, real cache."""

import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console

from pipelines.config import load_config
from pipelines.local.display import LineDisplay, RichDisplay
from pipelines.local.runner import LocalRunner, RunInterrupted, StepFailed
from pipelines.spec import FromConfig, FromRun, FromStep, Node, Pipeline, When
from steps.common.storage import local_path

TOY = Pipeline((
    Node("count", "tests.toy_steps.count", "cpu", {
        "context": FromRun("context"), "corpus_uri": FromConfig("corpus"), "label": FromConfig("name")}),
    Node("summarise", "tests.toy_steps.summarise", "cpu", {
        "context": FromRun("context"), "counts_uri": FromStep("count", "counts_uri")}),
    Node("announce", "tests.toy_steps.announce", "cpu", {"text": FromStep("summarise", "text")},
         when=When("summarise", "large", "true")),
))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a.md", "b.md", "c.md"):
        (corpus / name).write_text(name)
    monkeypatch.setenv("TOY_MARKER_DIR", str(tmp_path))
    return tmp_path


def _runner(workdir: Path, *overrides: str) -> LocalRunner:
    config = load_config(overrides=[f"corpus={(workdir / 'corpus').as_uri()}", *overrides], cwd=workdir)
    return LocalRunner(config, TOY, LineDisplay())


def test_run_records_every_step_and_summary(workdir: Path) -> None:
    summary = _runner(workdir).run()
    run_dir = Path(summary.run_dir)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "succeeded"
    assert [(s["name"], s["status"]) for s in on_disk["steps"]] == [
        ("count", "succeeded"), ("summarise", "succeeded"), ("announce", "succeeded")]
    assert on_disk["steps"][0]["outputs"]["n_files"] == 3
    assert on_disk["steps"][2]["outputs"]["message"] == "large corpus (local-demo:3)"
    for step in ("count", "summarise", "announce"):
        for name in ("inputs.json", "outputs.json", "log.txt", "timing.json"):
            assert (run_dir / "steps" / step / name).is_file()


def test_the_live_display_on_a_terminal_shows_every_step_as_it_goes_and_how_it_ended(workdir: Path) -> None:
    (workdir / "corpus" / "c.md").unlink()  # two files: `announce` is skipped
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    config = load_config(overrides=[f"corpus={(workdir / 'corpus').as_uri()}"], cwd=workdir)
    LocalRunner(config, TOY, RichDisplay(console)).run()
    # Each redraw starts with a carriage return; the last word of a step's line is its status.
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    frames = [{word: line.split()[-1] for line in frame.splitlines() for word in line.split()
               if word in ("count", "summarise", "announce")} for frame in text.split("\r")]
    assert {"count": "running", "summarise": "pending", "announce": "pending"} in frames
    assert {"count": "succeeded", "summarise": "running", "announce": "pending"} in frames
    assert frames[-1] == {"count": "succeeded", "summarise": "succeeded", "announce": "skipped"}


def test_second_identical_run_reuses_every_step(workdir: Path) -> None:
    first = _runner(workdir).run()
    second = _runner(workdir).run()
    assert [s.status for s in second.steps] == ["cached"] * 3
    assert {s.reused_from_run for s in second.steps} == {first.run_id}
    assert second.steps[0].outputs == first.steps[0].outputs
    for step in second.steps:  # the run directory says where each reused output came from
        step_dir = Path(second.run_dir) / "steps" / step.name
        timing = json.loads((step_dir / "timing.json").read_text())
        assert (timing["status"], timing["attempts"], timing["reused_from_run"]) == ("cached", 0, first.run_id)
        first_log = Path(first.run_dir) / "steps" / step.name / "log.txt"
        assert first_log.is_file() and f"its log: {first_log}" in Path(step.log).read_text()


def test_changed_input_reruns_that_step_and_content_keyed_downstream(workdir: Path) -> None:
    _runner(workdir).run()
    (workdir / "corpus" / "d.md").write_text("new document")
    summary = _runner(workdir).run()
    assert [s.status for s in summary.steps] == ["succeeded", "succeeded", "succeeded"]
    # Same content upstream (only the run id differs) -> the downstream step is still a cache hit.
    (workdir / "corpus" / "d.md").unlink()
    again = _runner(workdir).run(until="count")
    assert [s.status for s in again.steps] == ["cached"]


def test_failure_names_step_and_resume_reruns_only_what_failed(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_FAIL_SUMMARISE", "always")
    with pytest.raises(StepFailed) as failed:
        _runner(workdir).run()
    record = failed.value.record
    assert record.name == "summarise" and record.status == "failed"
    assert "simulated bug" in Path(record.log).read_text()
    run_id = Path(record.log).parents[2].name
    monkeypatch.delenv("TOY_FAIL_SUMMARISE")
    resumed = _runner(workdir).run(resume=run_id)
    assert resumed.run_id == run_id
    assert [s.status for s in resumed.steps] == ["cached", "succeeded", "succeeded"]


def test_a_stop_while_a_step_runs_is_recorded_as_interrupted(workdir: Path) -> None:
    @contextmanager
    def ctrl_c(inputs: dict, step_dir: Path) -> Iterator[dict]:
        raise KeyboardInterrupt  # Ctrl-C lands while the step is being started
        yield inputs

    config = load_config(overrides=[f"corpus={(workdir / 'corpus').as_uri()}"], cwd=workdir)
    with pytest.raises(RunInterrupted, match="interrupted during step summarise") as stopped:
        LocalRunner(config, TOY, LineDisplay(), services={"summarise": ctrl_c}).run()
    assert stopped.value.exit_code == 130
    run_dir = Path(stopped.value.summary.run_dir)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "interrupted"
    assert [(s["name"], s["status"]) for s in on_disk["steps"]] == [
        ("count", "succeeded"), ("summarise", "interrupted"), ("announce", "pending")]
    assert json.loads((run_dir / "steps" / "summarise" / "timing.json").read_text())["status"] == "interrupted"


def test_transient_failure_is_retried(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_FAIL_COUNT", "transient-once")
    summary = _runner(workdir, "local.transient_retries=1").run(until="count")
    assert summary.steps[0].status == "succeeded" and summary.steps[0].attempts == 2


def test_transient_failure_without_retries_fails(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_FAIL_COUNT", "transient-once")
    with pytest.raises(StepFailed, match="exit code 75"):
        _runner(workdir, "local.transient_retries=0").run(until="count")


def test_when_condition_skips(workdir: Path) -> None:
    (workdir / "corpus" / "a.md").unlink()
    (workdir / "corpus" / "b.md").unlink()
    summary = _runner(workdir).run()
    assert [s.status for s in summary.steps] == ["succeeded", "succeeded", "skipped"]


def test_steps_downstream_of_a_skipped_step_are_skipped(workdir: Path) -> None:
    (workdir / "corpus" / "a.md").unlink()
    (workdir / "corpus" / "b.md").unlink()
    after_skip = Node("after", "tests.toy_steps.announce", "cpu", {"text": FromStep("announce", "message")})
    config = load_config(overrides=[f"corpus={(workdir / 'corpus').as_uri()}"], cwd=workdir)
    summary = LocalRunner(config, Pipeline((*TOY.nodes, after_skip)), LineDisplay()).run()
    assert [s.status for s in summary.steps] == ["succeeded", "succeeded", "skipped", "skipped"]


def test_until_runs_only_the_needed_steps(workdir: Path) -> None:
    summary = _runner(workdir).run(until="summarise")
    assert [s.name for s in summary.steps] == ["count", "summarise"]


def test_a_step_service_runs_beside_the_step_and_stops_after(workdir: Path) -> None:
    events: list[str] = []

    @contextmanager
    def service(inputs: dict, step_dir: Path) -> Iterator[dict]:
        events.append(f"start {step_dir.name}")
        yield {**inputs, "label": "from-service"}  # e.g. the URL of a server started for the step
        events.append("stop")

    config = load_config(overrides=[f"corpus={(workdir / 'corpus').as_uri()}"], cwd=workdir)
    summary = LocalRunner(config, TOY, LineDisplay(), services={"count": service}).run(until="count")
    [count] = summary.steps
    assert count.status == "succeeded" and events == ["start count", "stop"]
    step_dir = Path(summary.run_dir) / "steps" / "count"
    assert json.loads((step_dir / "inputs.json").read_text())["label"] == "from-service"  # what the step got
    assert (local_path(count.outputs["counts_uri"]) / "count.txt").read_text() == "from-service:3"


def test_a_service_that_cannot_start_fails_its_step_with_the_reason(workdir: Path) -> None:
    @contextmanager
    def broken(inputs: dict, step_dir: Path) -> Iterator[dict]:
        raise RuntimeError("prometheus not healthy after 60s")
        yield inputs

    config = load_config(overrides=[f"corpus={(workdir / 'corpus').as_uri()}"], cwd=workdir)
    with pytest.raises(StepFailed, match="could not start what the step needs: prometheus not healthy") as failed:
        LocalRunner(config, TOY, LineDisplay(), services={"summarise": broken}).run()
    # The step's process never started, yet its log exists and says why.
    assert "prometheus not healthy" in Path(failed.value.record.log).read_text()


def test_no_cache_runs_every_step_and_still_fills_the_cache(workdir: Path) -> None:
    config = load_config(overrides=[f"corpus={(workdir / 'corpus').as_uri()}"], cwd=workdir)
    _runner(workdir).run()
    fresh = LocalRunner(config, TOY, LineDisplay(), use_cache=False).run()
    assert [s.status for s in fresh.steps] == ["succeeded"] * 3
    again = _runner(workdir).run()
    assert [s.status for s in again.steps] == ["cached"] * 3
    assert {s.reused_from_run for s in again.steps} == {fresh.run_id}  # the newest outputs win


def test_new_model_files_invalidate_the_cache_of_steps_that_load_the_model(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EUROLORA_CACHE_DIR", str(workdir / "cache"))
    model = workdir / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "weights.bin").write_bytes(b"first weights")
    # The step sees only the model's path: without its content digest in the key, new weights would be a hit.
    uses_model = Pipeline((Node("tokenize", "tests.toy_steps.announce", "cpu", {"text": FromConfig("base_model")}),))
    config = load_config(overrides=[f"corpus={(workdir / 'corpus').as_uri()}", f"base_model={model}"], cwd=workdir)

    def statuses() -> list[str]:
        return [s.status for s in LocalRunner(config, uses_model, LineDisplay()).run().steps]

    assert statuses() == ["succeeded"]
    assert statuses() == ["cached"]
    (model / "weights.bin").write_bytes(b"other weights")  # same path, same size, new content
    assert statuses() == ["succeeded"]
    assert statuses() == ["cached"]


def test_a_missing_model_folder_fails_the_step_before_it_starts(workdir: Path) -> None:
    uses_model = Pipeline((Node("tokenize", "tests.toy_steps.announce", "cpu", {"text": FromConfig("base_model")}),))
    config = load_config(overrides=[f"corpus={(workdir / 'corpus').as_uri()}", f"base_model={workdir / 'nope'}"],
                         cwd=workdir)
    with pytest.raises(StepFailed, match="expected an HF model folder"):
        LocalRunner(config, uses_model, LineDisplay()).run()
