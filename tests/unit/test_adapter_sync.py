"""The vLLM pod's adapter sync (pipelines/serving/adapter_sync.py) without a server: fetching and linking,
the loopback rule and a light readiness probe. Against real vLLM: tests/local/test_vllm_adapters.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.serving import adapter_sync
from steps.canary.adapter_set import AdapterEntry, AdapterSet
from steps.common.contract import RuntimeContext, publishing
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings


def test_fetch_links_every_adapter_once_and_never_repoints_a_name(tmp_path: Path) -> None:
    context = RuntimeContext(run_id="t", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))
    uris = {}
    for version in ("3", "4"):
        with publishing(context, "finetune", f"adapter-{version}") as (out, uri):
            (out / "adapter_config.json").write_text(json.dumps({"r": int(version)}))
            (out / "adapter_model.safetensors").write_bytes(version.encode() * 100)
        uris[version] = uri
    adapter_set = AdapterSet(family="handbook", adapters=[
        AdapterEntry(name="handbook-v3", uri=uris["3"], role="champion", version="3"),
        AdapterEntry(name="handbook-v4", uri=uris["4"], role="challenger", version="4")])
    dest = tmp_path / "adapters"
    linked = adapter_sync.fetch(adapter_set, dest)
    assert json.loads((linked["handbook-v4"] / "adapter_config.json").read_text()) == {"r": 4}
    assert adapter_sync.fetch(adapter_set, dest) == linked  # idempotent
    # The set now lists other weights under a linked name: refused, the name keeps its files, the rest syncs.
    changed = adapter_set.model_copy(update={"adapters": [
        adapter_set.adapters[0], adapter_set.adapters[1].model_copy(update={"uri": uris["3"]})]})
    with pytest.raises(adapter_sync.NameConflict, match="handbook-v4 already holds"):
        adapter_sync.fetch(changed, dest)
    assert json.loads((dest / "handbook-v4" / "adapter_config.json").read_text()) == {"r": 4}


def test_only_the_pods_own_server_on_loopback_is_reached() -> None:
    with pytest.raises(SystemExit, match="loopback"):
        adapter_sync.main(["ready", "--config", "x.json", "--url", "http://vllm.example.com/v1"])


def test_the_readiness_probe_imports_no_hera_torch_vllm_or_mlflow() -> None:
    """`python -m pipelines.serving.adapter_sync ready` runs every 10 s in every vLLM pod: it must start light."""
    probe = ("import sys, pipelines.serving.adapter_sync, steps.canary.serving; print(sorted({m.split('.')[0] "
             "for m in sys.modules} & {'hera', 'torch', 'mlflow', 'transformers', 'vllm'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout
