"""Loaded LoRA adapters by served name, with vLLM's rule: a name stands for one set of weights.

Loading different weights under an already loaded name is refused (vLLM refuses any reload: a reused
name can hit a prefix cache computed with the old weights), so new weights need a new versioned name
(`<family>-v<N>`). Loading the same weights again under the same name is idempotent.

Weights are identified by content (sha256 of `adapter_config.json` and the weight files), not by
path, and each loaded adapter is snapshotted into a content-addressed folder that the engine reads:
weights rewritten in place at the original path can never reach a name that already serves.
"""

import hashlib
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.serve.errors import APIError

ADAPTER_CONFIG = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class Adapter:
    name: str
    source: str  # the path given at load time, as given (listed as `root` in /v1/models, like vLLM)
    digest: str  # sha256 over the adapter's config and weights
    folder: Path  # the content-addressed snapshot the engine loads
    created: int = field(default_factory=lambda: int(time.time()))


def adapter_files(folder: Path) -> list[Path]:
    """The files that define an adapter's weights; APIError 404/400 if `folder` is not an adapter."""
    if not folder.exists():
        raise APIError(404, f"no LoRA adapter found at {str(folder)!r}", param="lora_path", code="adapter_not_found")
    if not folder.is_dir() or not (folder / ADAPTER_CONFIG).is_file():
        raise APIError(400, f"{str(folder)!r} is not a LoRA adapter folder (no {ADAPTER_CONFIG})",
                       param="lora_path", code="invalid_adapter")
    weights = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        raise APIError(400, f"{str(folder)!r} has no adapter weights ({' or '.join(WEIGHT_FILES)})",
                       param="lora_path", code="invalid_adapter")
    return [folder / ADAPTER_CONFIG, *weights]


def digest_files(files: list[Path]) -> str:
    outer = hashlib.sha256()
    for path in files:
        inner = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                inner.update(block)
        outer.update(f"{path.name}\0{inner.hexdigest()}\n".encode())
    return outer.hexdigest()


class AdapterRegistry:
    """Name -> adapter. Not thread-safe: the app calls it from the event loop only."""

    def __init__(self, snapshot_root: Path, max_adapters: int) -> None:
        self._root = snapshot_root
        self._max = max_adapters
        self._by_name: dict[str, Adapter] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Adapter | None:
        return self._by_name.get(name)

    def all(self) -> list[Adapter]:
        return list(self._by_name.values())

    def prepare(self, name: str, source: str) -> tuple[Adapter, bool]:
        """(adapter, already_loaded). Refuses other weights under a loaded name; snapshots new weights.

        Reads and copies files: call it off the event loop."""
        folder = Path(source.removeprefix("file://")).expanduser()
        files = adapter_files(folder)
        digest = digest_files(files)
        loaded = self._by_name.get(name)
        if loaded is not None:
            if loaded.digest == digest:
                return loaded, True
            raise APIError(
                400,
                f"the LoRA adapter {name!r} is already loaded with different weights (sha256 "
                f"{loaded.digest[:12]}, new {digest[:12]}); load new weights under a new versioned name "
                f"(e.g. <family>-v<N+1>) or unload {name!r} first",
                param="lora_name", code="adapter_name_in_use",
            )
        if len(self._by_name) >= self._max:
            raise APIError(400, f"{self._max} adapters are loaded already (--max-loras); unload one first",
                           param="lora_name", code="too_many_adapters")
        snapshot = self._root / digest[:32]
        if not snapshot.is_dir():
            staging = self._root / f".{digest[:32]}.tmp-{uuid.uuid4().hex}"
            staging.mkdir(parents=True)
            for path in files:
                shutil.copy2(path, staging / path.name)
            if digest_files([staging / path.name for path in files]) != digest:
                shutil.rmtree(staging, ignore_errors=True)
                raise APIError(409, f"the adapter at {source!r} changed while it was being loaded; retry",
                               param="lora_path", code="adapter_changed")
            try:
                staging.rename(snapshot)
            except OSError:  # another load of the same weights won the race: use its snapshot
                shutil.rmtree(staging, ignore_errors=True)
        return Adapter(name=name, source=source, digest=digest, folder=snapshot), False

    def add(self, adapter: Adapter) -> None:
        self._by_name[adapter.name] = adapter

    def remove(self, name: str) -> Adapter:
        adapter = self._by_name.pop(name, None)
        if adapter is None:
            raise APIError(404, f"the LoRA adapter {name!r} is not loaded", param="lora_name",
                           code="model_not_found")
        return adapter
