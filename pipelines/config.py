"""The pipeline configuration: one YAML validated into a pydantic model before any work starts.

`--set a.b=value` overrides are applied to the raw YAML first, so they are validated like the rest.
All problems (schema and residency) are reported together, each naming its key and value.
"""

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from pipelines.argo.settings import ArgoSettings
from steps.canary.settings import CanarySettings
from steps.check_dataset.settings import CheckDatasetSettings
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyError, ResidencyPolicy
from steps.common.storage import StorageSettings
from steps.finetune.settings import FinetuneSettings
from steps.generate_qa.settings import GenerateQASettings
from steps.ingest.settings import IngestSettings
from steps.judge.settings import JudgeSettings
from steps.promote.settings import PromoteSettings

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "local.yaml"


class LocalServingSettings(BaseModel):
    """The serving stack the local runner starts for the canary step (canary.routing: local):
    `eurolora serve` with the base model and a Prometheus scraping it, both on 127.0.0.1, stopped after."""

    model_config = {"extra": "forbid"}
    # False: canary.replicas and canary.metrics.prometheus_url point at servers you run yourself.
    managed: bool = True
    threads: int = Field(1, ge=1, le=64)  # the server's torch threads: leaves a core to load and judge
    scrape_interval_s: float = Field(1.0, gt=0, le=60)
    start_timeout_s: float = Field(300.0, gt=0)


class LocalSettings(BaseModel):
    """Only used by the local runner."""

    model_config = {"extra": "forbid"}
    runs_dir: str = "runs"
    step_timeout_s: float = Field(3600.0, gt=0)
    transient_retries: int = Field(2, ge=0, le=10)  # retried only on exit code 75 (TransientError)
    serving: LocalServingSettings = Field(default_factory=LocalServingSettings)


class PipelineConfig(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = Field(..., pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
    adapter_family: str = Field("handbook", pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
    base_model: str = "embedded"
    corpus: str
    residency: ResidencyPolicy = Field(default_factory=ResidencyPolicy)
    storage: StorageSettings
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    generate_qa: GenerateQASettings = Field(default_factory=GenerateQASettings)
    check_dataset: CheckDatasetSettings = Field(default_factory=CheckDatasetSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    promote: PromoteSettings = Field(default_factory=PromoteSettings)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    argo: ArgoSettings = Field(default_factory=ArgoSettings)

    def get(self, dotted: str) -> Any:
        """The value at a dotted path (`judge.judge_engine.model`)."""
        value: Any = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value


class ConfigError(ValueError):
    """Every problem found in a configuration, one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"invalid configuration {source}:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def load_config(path: Path | None = None, overrides: list[str] | None = None, cwd: Path | None = None
                ) -> PipelineConfig:
    """Read YAML, apply `key=value` overrides, resolve relative paths, validate everything at once."""
    path = path or DEFAULT_CONFIG
    source = str(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(source, [f"cannot read YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the top level must be a mapping"])
    problems = [p for item in overrides or [] if (p := _apply_override(raw, item))]
    _resolve_paths(raw, config_dir=path.parent.resolve(), cwd=(cwd or Path.cwd()).resolve())
    config = None
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems += [_format_error(err) for err in exc.errors()]
    policy = config.residency if config else _policy_or_default(raw)
    problems += residency_problems(raw, policy)
    if problems or config is None:
        raise ConfigError(source, problems)
    return config


def residency_problems(raw: dict[str, Any], policy: ResidencyPolicy) -> list[str]:
    """Check every region and endpoint anywhere in the (raw) config against the policy."""
    problems = []
    for key, value in _leaves(raw):
        if key.startswith("residency."):
            continue
        leaf = key.rsplit(".", 1)[-1]
        try:
            if isinstance(value, str) and (leaf == "region" or leaf.endswith("_region")):
                policy.check_region(value, key)
            elif isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
                policy.check_url(value, key)
            elif leaf.endswith("regions") and isinstance(value, list):
                for i, region in enumerate(value):
                    policy.check_region(str(region), f"{key}[{i}]")
        except ResidencyError as exc:
            problems.append(str(exc))
    return problems


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    if isinstance(node, list) and not all(isinstance(v, (str, int, float)) for v in node):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), node)]


def _apply_override(raw: dict[str, Any], item: str) -> str | None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        return f"--set {item!r}: expected dotted.key=value"
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        return f"--set {item!r}: value is not valid YAML ({exc})"
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return f"--set {item!r}: {part} is not a section"
        node = child
    node[parts[-1]] = value
    return None


def _resolve_paths(raw: dict[str, Any], config_dir: Path, cwd: Path) -> None:
    """Relative local paths: the corpus is relative to the config file, run outputs to the cwd."""
    corpus = raw.get("corpus")
    if isinstance(corpus, str) and "://" not in corpus:
        raw["corpus"] = (config_dir / corpus).resolve().as_uri()
    storage = raw.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("artifact_root"), str):
        root = storage["artifact_root"]
        if "://" not in root:
            storage["artifact_root"] = (cwd / root).resolve().as_uri()
    registry = raw.get("registry")
    if isinstance(registry, dict) and isinstance(registry.get("tracking_uri"), str):
        uri = registry["tracking_uri"]
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            registry["tracking_uri"] = "sqlite:///" + str((cwd / uri.removeprefix("sqlite:///")).resolve())
    if isinstance(registry, dict) and registry.get("artifact_location") and "://" not in registry["artifact_location"]:
        registry["artifact_location"] = (cwd / registry["artifact_location"]).resolve().as_uri()
    local = raw.setdefault("local", {})
    if isinstance(local, dict):
        local["runs_dir"] = str((cwd / str(local.get("runs_dir", LocalSettings().runs_dir))).resolve())


def _policy_or_default(raw: dict[str, Any]) -> ResidencyPolicy:
    try:
        return ResidencyPolicy.model_validate(raw.get("residency") or {})
    except ValidationError:
        return ResidencyPolicy()


def _format_error(err: Any) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    got = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.80})"
    return f"{key}: {err['msg']}{got}"
