"""The pipeline configuration: one YAML validated into a pydantic model before any work starts.

`--set a.b=value` overrides are applied to the raw YAML first, so they are validated like the rest.
All problems (schema and residency) are reported together, each naming its key and value.
"""

import json
import math
import re
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError

from pipelines.argo.settings import ArgoSettings
from steps.canary.settings import CanarySettings
from steps.check_dataset.settings import CheckDatasetSettings
from steps.common.models import local_model_problem
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyError, ResidencyPolicy, has_scheme
from steps.common.storage import StorageSettings, local_path
from steps.finetune.settings import FinetuneSettings
from steps.generate_qa.settings import GenerateQASettings
from steps.ingest.settings import IngestSettings
from steps.judge.settings import JudgeSettings
from steps.promote.settings import PromoteSettings

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "local.yaml"


class LocalServingSettings(BaseModel):
    """The serving stack the local runner starts for the canary step (canary.routing: local):
    vLLM's own server with the base model and a Prometheus scraping it, both on 127.0.0.1, stopped after."""

    model_config = {"extra": "forbid"}
    # False: canary.replicas and canary.metrics.prometheus_url point at servers you run yourself.
    managed: bool = True
    threads: int = Field(1, ge=1, le=64)  # vLLM's OpenMP threads: leaves a core to the canary's load and judge
    scrape_interval_s: float = Field(1.0, gt=0, le=60)
    start_timeout_s: float = Field(300.0, gt=0)  # vLLM answers after ~60-80 s on 2 cores


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


def load_config(path: Path | None = None, overrides: list[str] | None = None, cwd: Path | None = None,
                local_run: bool = False) -> PipelineConfig:
    """Read YAML, apply `key=value` overrides, resolve relative paths, validate everything at once.

    `local_run`: the config is about to run on this machine, so local paths (the corpus, model folders)
    must exist here; a cluster config names paths of its pods and is not checked against this machine."""
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
    schema_errors: list[Any] = []
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        schema_errors = exc.errors()
    problems += [f"{_error_key(err)}: {_error_text(err)}" for err in schema_errors]
    reported = {_error_key(err) for err in schema_errors}
    problems += [p for key, p in non_finite_problems(raw, PipelineConfig) if key not in reported]
    policy = config.residency if config else _policy_or_default(raw)
    problems += residency_problems(raw, policy)
    if local_run:
        problems += local_path_problems(raw)
    if problems or config is None:
        raise ConfigError(source, problems)
    return config


def residency_problems(raw: dict[str, Any], policy: ResidencyPolicy) -> list[str]:
    """Check every region and endpoint anywhere in the (raw) config against the policy.

    Structural: every string in every mapping and list is looked at. A value is a region when the key it
    sits under names one (`region`, `*_region`, `*_regions`, a node label `.../region`); an endpoint when
    the key names one (`*url`, `*endpoint`, `*host`, `*dns`, `replicas`), even without a scheme; and any
    value with a scheme is checked as a URI of that scheme. The policy section itself is validated by its
    model (EU/EEA regions only)."""
    problems = []
    for key, name, value in _strings({k: v for k, v in raw.items() if k != "residency"}):
        try:
            if _names_region(name):
                policy.check_region(value, key)
            elif _names_endpoint(name) and value.strip():
                policy.check_endpoint(value, key)
            elif has_scheme(value):
                policy.check_uri(value, key)
        except ResidencyError as exc:
            problems.append(str(exc))
    return problems


_ENDPOINT_WORDS = {"url", "urls", "endpoint", "endpoints", "host", "hosts", "dns", "replicas"}


def _names_region(name: str) -> bool:
    base = name.lower().rsplit("/", 1)[-1]  # node labels: topology.kubernetes.io/region
    return base in ("region", "regions") or base.endswith(("_region", "_regions", "-region"))


def _names_endpoint(name: str) -> bool:
    # `*_uri` is not here on purpose: a URI without a scheme is a local path (MLflow, storage, backup).
    return re.split(r"[_\-./]", name.lower())[-1] in _ENDPOINT_WORDS


def _strings(node: Any, key: str = "", name: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, name of the key it sits under, value) of every string; list items keep the list's name."""
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _strings(v, child_key(key, k), str(k))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _strings(v, child_key(key, i), name)]
    return [(key, name, node)] if isinstance(node, str) else []


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def child_key(parent: str, part: object) -> str:
    """`a.b`, `a[0]`, and `a["topology.kubernetes.io/region"]` for a mapping key that is not a plain name."""
    if isinstance(part, int):
        return f"{parent}[{part}]"
    text = str(part)
    if not _PLAIN_KEY.match(text):
        return f"{parent}[{json.dumps(text)}]"
    return f"{parent}.{text}" if parent else text


def non_finite_problems(raw: Any, annotation: Any, key: str = "") -> list[tuple[str, str]]:
    """Float settings given inf or nan (`.inf`, `1e999`, `--set x=nan`): pydantic accepts them, and a
    timeout of inf or a threshold of nan would silently disable what it bounds. Follows the model's field
    types through the raw mapping, so a string setting that happens to read "inf" is left alone."""
    if annotation is float:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            return []
        try:
            finite = math.isfinite(float(raw))
        except (ValueError, OverflowError):
            return []  # not a float at all: pydantic reports it
        return [] if finite else [(key, f"{key}: must be a finite number (got {raw!r:.80})")]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(raw, dict):
            return []
        return [p for name, field in annotation.model_fields.items() if name in raw
                for p in non_finite_problems(raw[name], field.annotation, child_key(key, name))]
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        return list(dict.fromkeys(p for arm in args for p in non_finite_problems(raw, arm, key)))
    if origin is list and isinstance(raw, list):
        return [p for i, item in enumerate(raw) for p in non_finite_problems(item, args[0], child_key(key, i))]
    if origin is dict and isinstance(raw, dict):
        return [p for k, item in raw.items() for p in non_finite_problems(item, args[1], child_key(key, k))]
    return []


def local_path_problems(raw: dict[str, Any]) -> list[str]:
    """What a run on this machine needs to exist here: the corpus folder and local model folders."""
    problems = []
    corpus = raw.get("corpus")
    if isinstance(corpus, str) and corpus.startswith("file://") and not local_path(corpus).is_dir():
        problems.append(f"corpus={corpus!r}: no such directory on this machine")
    models = [("base_model", raw.get("base_model"))]
    for section, engine in (("generate_qa", "engine"), ("judge", "judge_engine")):
        settings = (raw.get(section) or {}).get(engine) if isinstance(raw.get(section), dict) else None
        if isinstance(settings, dict) and settings.get("kind", "transformers") == "transformers":
            models.append((f"{section}.{engine}.model", settings.get("model")))
    for key, source in models:
        if isinstance(source, str) and (problem := local_model_problem(source)):
            problems.append(f"{key}: {problem}")
    return problems


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


def _error_key(err: Any) -> str:
    key = ""
    for part in err["loc"]:
        key = key + part if part == "[key]" else child_key(key, part)  # "[key]": the mapping key is wrong
    return key or "(top level)"


def _error_text(err: Any) -> str:
    got = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.80})"
    return f"{err['msg']}{got}"
