"""Walks the pipeline graph on this machine with Argo's semantics: dependencies, `when`, retries on
transient failures, caching (memoization), each step in its own process like a pod."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipelines.cache_key import cache_key, pipeline_code_version, step_code_version
from pipelines.config import PipelineConfig
from pipelines.local.cache import StepCache
from pipelines.local.display import RunDisplay
from pipelines.local.processes import process_in_own_session
from pipelines.local.records import RunSummary, StepRecord, write_json_atomic
from pipelines.spec import FromConfig, FromStep, Node, Pipeline
from steps.common.contract import EXIT_TRANSIENT, RuntimeContext, TransientError
from steps.common.models import ModelSourceError, in_process_models, model_digest
from steps.common.residency import OFFLINE_ENV

# Config paths whose value is a base model source; engine settings name their models too (in_process_models).
_MODEL_PATHS = ("base_model",)


class StepFailed(RuntimeError):
    def __init__(self, record: StepRecord, summary: RunSummary) -> None:
        super().__init__(f"step {record.name} failed ({record.error}); log: {record.log}")
        self.record = record
        self.summary = summary


class RunInterrupted(RuntimeError):
    """The run was stopped (Ctrl-C, or SIGTERM turned into SystemExit); summary.json records it."""

    def __init__(self, summary: RunSummary, exit_code: int) -> None:
        stopped = [s.name for s in summary.steps if s.status == "interrupted"]
        super().__init__(f"interrupted{f' during step {stopped[0]}' if stopped else ''}")
        self.summary = summary
        self.exit_code = exit_code


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


# What a step needs running beside it (a pod's neighbours on a cluster): given the step's inputs and its
# directory, a context manager that starts it, yields the inputs pointed at it, and stops it after.
StepService = Callable[[dict[str, Any], Path], AbstractContextManager[dict[str, Any]]]


class LocalRunner:
    def __init__(self, config: PipelineConfig, pipeline: Pipeline, display: RunDisplay,
                 use_cache: bool = True, services: Mapping[str, StepService] | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.display = display
        self.use_cache = use_cache
        self.services = dict(services or {})
        self.runs_root = Path(config.local.runs_dir)

    def run(self, run_dir: Path | None = None, until: str | None = None, resume: str | None = None
            ) -> RunSummary:
        """Run (or resume) the pipeline; raises StepFailed naming the step and its log, RunInterrupted when
        stopped."""
        if resume:
            run_dir = run_dir or self.runs_root / resume
            if not run_dir.is_dir():
                raise FileNotFoundError(f"--resume {resume}: no run directory {run_dir}")
        run_dir = (run_dir or self.runs_root / new_run_id()).resolve()
        nodes = self.pipeline.until(until) if until else self.pipeline.ordered()
        summary = RunSummary(run_id=run_dir.name, run_dir=str(run_dir), config_name=self.config.name,
                             until=until or "", steps=[StepRecord(name=n.name) for n in nodes])
        write_json_atomic(run_dir / "config.json", self.config.model_dump(mode="json"))
        context = RuntimeContext(run_id=summary.run_id, storage=self.config.storage,
                                 residency=self.config.residency, scratch_dir=str(run_dir / "scratch"))
        cache = StepCache(self.runs_root / ".cache", context.store())
        started = time.monotonic()
        self.display.start([n.name for n in nodes])
        try:
            for node in nodes:
                record = summary.step(node.name)
                self._run_node(node, record, summary, context, cache, run_dir)
                write_json_atomic(run_dir / "summary.json", summary.model_dump(mode="json"))
                if record.status == "failed":
                    summary.status = "failed"
                    raise StepFailed(record, summary)
            summary.status = "succeeded"
        except (KeyboardInterrupt, SystemExit) as exc:  # SIGTERM arrives as SystemExit (see run_command)
            summary.status = "interrupted"
            code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
            raise RunInterrupted(summary, code) from exc
        finally:
            self.display.stop()
            summary.duration_s = round(time.monotonic() - started, 2)
            write_json_atomic(run_dir / "summary.json", summary.model_dump(mode="json"))
        return summary

    def _run_node(self, node: Node, record: StepRecord, summary: RunSummary, context: RuntimeContext,
                  cache: StepCache, run_dir: Path) -> None:
        step_dir = run_dir / "steps" / node.name
        if self._upstream_skipped(node, summary) or (node.when and not self._when_holds(node, summary)):
            record.status = "skipped"
            self.display.step_finished(record)
            return
        started = time.monotonic()
        # Set before anything can fail: every failure, even before the process starts, names its log.
        record.log = str(step_dir / "log.txt")
        try:
            self._key_and_run(node, record, summary, context, cache, step_dir)
        except (KeyboardInterrupt, SystemExit):
            record.status = "interrupted"  # its process was stopped on the way out
            self.display.step_finished(record)
            raise
        finally:
            record.duration_s = round(time.monotonic() - started, 2)
            write_json_atomic(step_dir / "timing.json", {
                "duration_s": record.duration_s, "attempts": record.attempts, "status": record.status,
                **({"reused_from_run": record.reused_from_run} if record.reused_from_run else {})})
        if record.status == "failed":
            _append_log(step_dir, f"--- failed: {record.error} ---\n")
        self.display.step_finished(record)

    def _key_and_run(self, node: Node, record: StepRecord, summary: RunSummary, context: RuntimeContext,
                     cache: StepCache, step_dir: Path) -> None:
        inputs = self._resolve_inputs(node, summary, context)
        write_json_atomic(step_dir / "inputs.json", inputs)
        try:
            # Keyed even with the cache off: `--no-cache` skips reading the cache, and the fresh outputs
            # still refresh it for the next run (as Argo's memoization writes after a miss).
            record.cache_key = cache_key(node.name, step_code_version(node.module), inputs, cache.store,
                                         self._model_digests(node, context))
            hit = cache.lookup(node.name, record.cache_key) if self.use_cache else None
        # The artifact store is down (digests cannot be read), or a model source does not exist.
        except (TransientError, ModelSourceError) as exc:
            record.status, record.error = "failed", f"before the step started: {exc}"
            return
        if hit:
            record.outputs, record.reused_from_run = hit.outputs, hit.run_id
            record.status = "cached"
            write_json_atomic(step_dir / "outputs.json", record.outputs)
            _append_log(step_dir, f"--- cached: the outputs of run {hit.run_id} were reused; its log: {hit.log} ---\n")
            return
        self.display.step_started(node.name)
        record.status = "running"
        rc = self._execute_with_service(node, record, step_dir, inputs)
        if rc == 0:
            record.outputs = json.loads((step_dir / "outputs.json").read_text())
            record.status = "succeeded"
            cache.save(node.name, record.cache_key, record.outputs, summary.run_id, record.log)
        else:
            record.status = "failed"
            record.error = record.error or f"exit code {rc}"

    def _execute_with_service(self, node: Node, record: StepRecord, step_dir: Path, inputs: dict[str, Any]
                              ) -> int:
        """Run the step with its service (if any) started beside it for all attempts."""
        with ExitStack() as stack:
            if service := self.services.get(node.name):
                try:
                    inputs = stack.enter_context(service(inputs, step_dir))
                except (OSError, RuntimeError) as exc:
                    record.error = f"could not start what the step needs: {exc}"
                    return 1
                write_json_atomic(step_dir / "inputs.json", inputs)  # what the step really got
            return self._execute_with_retries(node, record, step_dir)

    def _execute_with_retries(self, node: Node, record: StepRecord, step_dir: Path) -> int:
        retries = self.config.local.transient_retries
        while True:
            record.attempts += 1
            rc = self._execute(node, record, step_dir)
            if rc != EXIT_TRANSIENT or record.attempts > retries:
                return rc
            time.sleep(min(2 ** record.attempts, 30))  # backoff, as Argo's retryStrategy does

    def _execute(self, node: Node, record: StepRecord, step_dir: Path) -> int:
        outputs_path = step_dir / "outputs.json"
        outputs_path.unlink(missing_ok=True)
        progress_path = step_dir / "progress"
        log_path = Path(record.log)
        env = {**os.environ, **OFFLINE_ENV, "ARGO_PROGRESS_FILE": str(progress_path),
               "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        argv = [sys.executable, "-m", "pipelines.step_process", node.entrypoint,
                str(step_dir / "inputs.json"), str(outputs_path)]
        deadline = time.monotonic() + self.config.local.step_timeout_s
        with log_path.open("ab") as log:
            log.write(f"--- attempt {record.attempts} ---\n".encode())
            log.flush()
            # When the runner is stopped (Ctrl-C, SIGTERM), the block's end stops the step: no orphan runs on.
            with process_in_own_session(argv, stdout=log, stderr=subprocess.STDOUT, env=env) as proc:
                while proc.poll() is None:
                    self._report_progress(node.name, progress_path)
                    if time.monotonic() > deadline:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                        record.error = f"timed out after {self.config.local.step_timeout_s:.0f}s"
                        return 1
                    time.sleep(0.5)
        self._report_progress(node.name, progress_path)
        return proc.returncode

    def _report_progress(self, name: str, progress_path: Path) -> None:
        try:
            current, total = progress_path.read_text().split("/")
            self.display.step_progress(name, int(current), int(total))
        except (OSError, ValueError):
            pass

    def _resolve_inputs(self, node: Node, summary: RunSummary, context: RuntimeContext) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for field, binding in node.bindings.items():
            if isinstance(binding, FromConfig):
                value = self.config.get(binding.path)
            elif isinstance(binding, FromStep):
                value = summary.step(binding.step).outputs[binding.output]
            elif binding.name == "context":
                value = context
            else:
                value = pipeline_code_version()
            inputs[field] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        return inputs

    def _model_digests(self, node: Node, context: RuntimeContext) -> dict[str, str]:
        """Content digest of every model the step loads: new model files are a new cache key."""
        sources: set[str] = set()
        for binding in node.bindings.values():
            if isinstance(binding, FromConfig):
                value = self.config.get(binding.path)
                if binding.path in _MODEL_PATHS:
                    sources.add(value)
                elif isinstance(value, BaseModel):
                    sources.update(in_process_models(value))
        return {source: model_digest(source, context) for source in sorted(sources)}

    @staticmethod
    def _upstream_skipped(node: Node, summary: RunSummary) -> bool:
        """A node whose input comes from a skipped step is skipped too (Argo: `depends: X.Succeeded`)."""
        return any(summary.step(name).status == "skipped" for name in node.upstream)

    @staticmethod
    def _when_holds(node: Node, summary: RunSummary) -> bool:
        assert node.when is not None
        upstream = summary.step(node.when.step)
        if upstream.status not in ("succeeded", "cached"):
            return False
        return json.dumps(upstream.outputs.get(node.when.output)).strip('"') == node.when.equals


def _append_log(step_dir: Path, line: str) -> None:
    step_dir.mkdir(parents=True, exist_ok=True)
    with (step_dir / "log.txt").open("a") as log:
        log.write(line)
