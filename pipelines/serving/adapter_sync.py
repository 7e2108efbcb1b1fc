"""Keep a serving pod's adapters in line with the declarative adapter set (the `vllm-adapters` ConfigMap).

Runs inside the vLLM pod (manifests/serving/20-vllm-deployment.yaml), from the eurolora-cpu image:

    python -m pipelines.serving.adapter_sync fetch --config F --adapters /adapters --models /models
        init container: downloads the base model and every listed adapter from the EU bucket (verified
        against their manifests) and links them as /models/base and /adapters/<name>.
    python -m pipelines.serving.adapter_sync run --config F --adapters /adapters --url http://127.0.0.1:8000/v1
        native sidecar: every --interval seconds re-reads the set (the kubelet updates the mounted
        ConfigMap), fetches new adapters and loads every listed one into vLLM (/v1/load_lora_adapter,
        idempotent). It never unloads: the canary step does, after its drain period.
    python -m pipelines.serving.adapter_sync ready --config F --url http://127.0.0.1:8000/v1
        vLLM's readiness probe: exit 0 once /health answers and every champion adapter is served, so a
        restarted pod takes traffic only with its adapters back (challengers are best effort).

Only counts and names are logged. The vLLM API key comes from $VLLM_API_KEY (a secretKeyRef).
"""

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from steps.canary.adapter_set import AdapterSet
from steps.common.residency import ResidencyPolicy
from steps.common.storage import ArtifactStore, StorageSettings

if TYPE_CHECKING:
    from steps.canary.serving import ReplicaClient

log = logging.getLogger("eurolora.adapter_sync")

API_KEY_ENV = "VLLM_API_KEY"
BASE_LINK = "base"


def read_set(path: Path) -> AdapterSet:
    return AdapterSet.model_validate_json(path.read_text())


class NameConflict(RuntimeError):
    """A name in the set points at other files than the ones already linked under it in this pod."""


def _link(target: Path, link: Path) -> bool:
    """Point `link` at `target` atomically; False when it already does.

    NameConflict when `link` exists and points elsewhere: vLLM keeps serving the weights it loaded under a
    name (and may reuse their prefix cache), so a name is never re-pointed at other files."""
    if link.is_symlink() and link.resolve() == target.resolve():
        return False
    if link.is_symlink() or link.exists():
        raise NameConflict(f"{link} already holds {link.resolve()}, not {target.resolve()}: a served name never "
                           "changes weights; give the new weights a new versioned name")
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target.resolve(), target_is_directory=True)
    os.replace(tmp, link)
    return True


def _store(adapter_set: AdapterSet, scratch: Path) -> ArtifactStore:
    storage = adapter_set.storage or StorageSettings(artifact_root=scratch.resolve().as_uri())
    return ArtifactStore(storage, adapter_set.residency)


def fetch(adapter_set: AdapterSet, adapters_dir: Path, models_dir: Path | None = None) -> dict[str, Path]:
    """Every adapter (and the base model) present and verified locally; returns name -> linked folder.

    NameConflict (after linking every other adapter) when a listed name is already linked to other files."""
    adapters_dir.mkdir(parents=True, exist_ok=True)
    store = _store(adapter_set, adapters_dir)
    if models_dir is not None and adapter_set.base_model_uri:
        models_dir.mkdir(parents=True, exist_ok=True)
        local = store.materialize(adapter_set.base_model_uri, models_dir / ".cache")
        if _link(local, models_dir / BASE_LINK):
            log.info("adapter-sync: base model ready at %s", models_dir / BASE_LINK)
    out, conflicts = {}, []
    for entry in adapter_set.adapters:
        local = store.materialize(entry.uri, adapters_dir / ".cache")
        link = adapters_dir / entry.name
        try:
            if _link(local, link):
                log.info("adapter-sync: %s ready at %s", entry.name, link)
        except NameConflict as exc:
            conflicts.append(str(exc))
            continue
        out[entry.name] = link
    if conflicts:
        raise NameConflict("; ".join(conflicts))
    return out


def _client(url: str, timeout_s: float = 30.0) -> "ReplicaClient":
    from steps.canary.serving import ReplicaClient  # lazy: keeps the readiness probe's start light

    # The pod's own server on loopback: always allowed, whatever the bucket's residency policy lists.
    return ReplicaClient(url, ResidencyPolicy(), timeout_s=timeout_s, api_key_env=API_KEY_ENV)


def load_all(adapter_set: AdapterSet, adapters_dir: Path, url: str) -> dict[str, str]:
    """Load every listed adapter into the local server (idempotent); name -> outcome."""
    outcomes = {}
    with _client(url) as client:
        if not client.healthy():
            return {entry.name: "server_not_ready" for entry in adapter_set.adapters}
        for entry in adapter_set.adapters:
            try:
                outcomes[entry.name] = client.load_adapter(entry.name, str(adapters_dir / entry.name))
            except Exception as exc:  # noqa: BLE001 - one bad adapter must not stop the others
                outcomes[entry.name] = f"failed: {type(exc).__name__}"
                log.warning("adapter-sync: loading %s failed: %s", entry.name, exc)
    return outcomes


def ready(adapter_set: AdapterSet, url: str) -> tuple[bool, str]:
    with _client(url, timeout_s=5.0) as client:
        if not client.healthy():
            return False, "server not healthy"
        served = client.models()
    missing = [a.name for a in adapter_set.adapters if a.role == "champion" and a.name not in served]
    return (not missing, f"champion adapters not loaded: {missing}" if missing else "ready")


def _check_loopback(url: str) -> None:
    from urllib.parse import urlsplit

    if (urlsplit(url).hostname or "") not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"adapter-sync: --url {url} must be the pod's own server on loopback")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.serving.adapter_sync",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("fetch", "run", "ready"))
    parser.add_argument("--config", type=Path, required=True, help="the mounted adapters.json")
    parser.add_argument("--adapters", type=Path, default=Path("/adapters"))
    parser.add_argument("--models", type=Path, help="where the base model goes (fetch)")
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--interval", type=float, default=15.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _check_loopback(args.url)
    if args.command == "ready":
        ok, why = ready(read_set(args.config), args.url)
        if not ok:
            print(why, file=sys.stderr)
        return 0 if ok else 1
    if args.command == "fetch":
        fetch(read_set(args.config), args.adapters, args.models)
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        try:
            adapter_set = read_set(args.config)
            try:
                fetch(adapter_set, args.adapters)
            except NameConflict as exc:  # the name keeps its old weights; every other adapter is loaded
                log.error("adapter-sync: %s", exc)
            outcomes = load_all(adapter_set, args.adapters, args.url)
            loaded = sum(1 for o in outcomes.values() if o == "loaded")
            if loaded:
                log.info("adapter-sync: loaded %d adapter(s): %s", loaded, sorted(outcomes))
        except Exception as exc:  # noqa: BLE001 - keep reconciling; the readiness probe reports the state
            log.warning("adapter-sync: %s: %s", type(exc).__name__, exc)
        stop.wait(args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
