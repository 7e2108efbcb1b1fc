"""The pipeline declared once, as data: nodes, how each input is bound, and where each node runs.

The local runner walks this graph; the Argo compiler turns the same graph into Hera objects.
Bindings name the step's Input fields exactly (Python names); the compiler maps them to Argo
parameter names, so nothing here knows about kebab-case.
"""

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class FromConfig:
    """A value of the pipeline config at a dotted path (`judge.judge_engine.model`)."""

    path: str


@dataclass(frozen=True)
class FromStep:
    """An output field of an upstream step."""

    step: str
    output: str


@dataclass(frozen=True)
class FromRun:
    """Filled by the engine that runs the pipeline: `context` (RuntimeContext) or `code_version`."""

    name: Literal["context", "code_version"]


Binding = FromConfig | FromStep | FromRun
ImageFamily = Literal["cpu", "train-gpu", "infer-gpu"]


@dataclass(frozen=True)
class When:
    """Run the node only if an upstream output equals a value (Argo `when`)."""

    step: str
    output: str
    equals: str


@dataclass(frozen=True)
class Node:
    name: str
    module: str  # the step package; its `run` is the entrypoint
    image: ImageFamily
    bindings: Mapping[str, Binding]
    gpu: bool = False
    memoize: bool = False  # cache on input digests in Argo (the local runner caches every step)
    reports_progress: bool = False
    when: When | None = None
    mutex: str | None = None  # steps that must never run concurrently across workflows

    @property
    def entrypoint(self) -> str:
        return f"{self.module}:run"

    @property
    def upstream(self) -> tuple[str, ...]:
        steps = {b.step for b in self.bindings.values() if isinstance(b, FromStep)}
        if self.when:
            steps.add(self.when.step)
        return tuple(sorted(steps))

    def inputs_model(self) -> type:
        """The step's Input model (imports the step package, which is light by contract)."""
        run = importlib.import_module(self.module).run
        return next(iter(run.__annotations__.values()))

    def outputs_model(self) -> type:
        return importlib.import_module(self.module).run.__annotations__["return"]


_CTX = FromRun("context")


@dataclass(frozen=True)
class Pipeline:
    nodes: tuple[Node, ...] = field(default_factory=tuple)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no step named {name!r}; steps are {[n.name for n in self.nodes]}")

    def ordered(self) -> list[Node]:
        """Topological order (declaration order among ready nodes); refuses cycles and unknown steps."""
        names = {n.name for n in self.nodes}
        for node in self.nodes:
            missing = set(node.upstream) - names
            if missing:
                raise ValueError(f"step {node.name} depends on unknown step(s) {sorted(missing)}")
        done: list[Node] = []
        pending = list(self.nodes)
        while pending:
            ready = [n for n in pending if set(n.upstream) <= {d.name for d in done}]
            if not ready:
                raise ValueError(f"cycle among steps {[n.name for n in pending]}")
            done.append(ready[0])
            pending.remove(ready[0])
        return done

    def until(self, step: str) -> list[Node]:
        """`step` and everything it needs, in order."""
        wanted = {self.node(step).name}
        for node in reversed(self.ordered()):
            if node.name in wanted:
                wanted.update(node.upstream)
        return [n for n in self.ordered() if n.name in wanted]


def build_pipeline() -> Pipeline:
    """ingest -> generate_qa -> check_dataset -> finetune -> judge -> promote -> canary."""
    nodes = (
        Node("ingest", "steps.ingest", "cpu", {
            "context": _CTX, "settings": FromConfig("ingest"),
            "corpus_uri": FromConfig("corpus"), "tokenizer_model": FromConfig("base_model"),
        }, memoize=True, reports_progress=True),
        Node("generate_qa", "steps.generate_qa", "infer-gpu", {
            "context": _CTX, "settings": FromConfig("generate_qa"),
            "chunks_uri": FromStep("ingest", "chunks_uri"),
        }, gpu=True, memoize=True, reports_progress=True),
        Node("check_dataset", "steps.check_dataset", "cpu", {
            "context": _CTX, "settings": FromConfig("check_dataset"), "registry": FromConfig("registry"),
            "dataset_digest": FromStep("generate_qa", "dataset_digest"), "base_model": FromConfig("base_model"),
        }),
        Node("finetune", "steps.finetune", "train-gpu", {
            "context": _CTX, "settings": FromConfig("finetune"), "base_model": FromConfig("base_model"),
            "qa_uri": FromStep("generate_qa", "qa_uri"), "registry": FromConfig("registry"),
        }, gpu=True, reports_progress=True, when=When("check_dataset", "dataset_changed", "true")),
        Node("judge", "steps.judge", "infer-gpu", {
            "context": _CTX, "settings": FromConfig("judge"), "registry": FromConfig("registry"),
            "base_model": FromConfig("base_model"), "qa_uri": FromStep("generate_qa", "qa_uri"),
            "adapter_uri": FromStep("finetune", "adapter_uri"),
        }, gpu=True, reports_progress=True),
        Node("promote", "steps.promote", "cpu", {
            "context": _CTX, "settings": FromConfig("promote"), "registry": FromConfig("registry"),
            "adapter_uri": FromStep("finetune", "adapter_uri"),
            "mlflow_run_id": FromStep("finetune", "mlflow_run_id"),
            "report_uri": FromStep("judge", "report_uri"), "gate_passed": FromStep("judge", "gate_passed"),
            "expected_champion_version": FromStep("judge", "champion_version"),
            "base_model": FromConfig("base_model"),
            "base_model_digest": FromStep("check_dataset", "base_model_digest"),
            "corpus_digest": FromStep("ingest", "corpus_digest"),
            "qa_model": FromStep("generate_qa", "qa_model"),
            "dataset_digest": FromStep("generate_qa", "dataset_digest"),
            "judge_model": FromStep("judge", "judge_model"),
            "code_version": FromRun("code_version"),
        }, mutex="promote"),
        Node("canary", "steps.canary", "cpu", {
            "context": _CTX, "settings": FromConfig("canary"), "registry": FromConfig("registry"),
            "adapter_family": FromConfig("adapter_family"),
            "model_version": FromStep("promote", "model_version"), "promoted": FromStep("promote", "promoted"),
            "qa_uri": FromStep("generate_qa", "qa_uri"), "judge_engine": FromConfig("judge.judge_engine"),
        }, when=When("promote", "promoted", "true"), mutex="promote"),
    )
    return Pipeline(nodes)
