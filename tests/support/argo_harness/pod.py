"""One pod of the harness: a compiled script template run as Argo's executor runs it, in a subprocess.

What it keeps from the template: the command and arguments, the script source (substituted, written to a
file whose path is appended to the arguments, as Argo's executor does), the environment (plain values and
`secretKeyRef`s, read from the harness's secrets as the kubelet reads a Secret; a missing required key
fails the pod), the deadline (`activeDeadlineSeconds`), each output parameter read from its
`valueFrom.path` (its `default` when the file is missing) and each output artifact from its path.

What differs, so that it can run on this machine:
- Volumes: each `volumeMount` (the emptyDirs /scratch and /tmp) is a fresh folder of this pod, and every
  absolute path under a mount path in the arguments, the source, the environment and the output paths is
  rewritten into it. A path under no mount would be on the container's read-only root filesystem: an
  output there fails the pod here, as writing it would fail on the cluster.
- The interpreter: `python` is this machine's interpreter (the image's is the same project, installed);
  PYTHONPATH holds the repository and the name resolution of tests/support/argo_harness/pod_site.
- The environment has only what the template sets plus PATH, PYTHONPATH, ARGO_PROGRESS_FILE (set by Argo's
  controller in every main container) and the harness's node environment; nothing of the test process.
"""

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.local.processes import process_in_own_session
from tests.support.argo_harness.expressions import substitute

REPO = Path(__file__).resolve().parents[3]
POD_SITE = Path(__file__).resolve().parent / "pod_site"
ARGO_PROGRESS_PATH = "/var/run/argo/progress"  # Argo's value of ARGO_PROGRESS_FILE
SCRIPT_PATH = "/argo/staging/script"  # where Argo's executor writes a script template's source


class PodSetupError(RuntimeError):
    """The pod could not start on a cluster either (a missing Secret key, an output on a read-only path)."""


@dataclass
class PodResult:
    phase: str  # Succeeded or Failed
    exit_code: int
    message: str
    outputs: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)  # output artifact name -> file, when present
    root: Path = Path()
    log: Path = Path()
    duration_s: float = 0.0


class PodPaths:
    """The pod's mounts as folders of this machine, and the rewriting of absolute paths into them."""

    def __init__(self, root: Path, mounts: list[dict[str, Any]]) -> None:
        self.root = root
        self.mounts = {m["mountPath"].rstrip("/"): root / "volumes" / m["name"] for m in mounts}
        self.mounts["/argo"] = root / "argo"  # the executor's own files: the script, the progress file
        self.mounts["/var/run/argo"] = root / "argo-run"
        for folder in self.mounts.values():
            folder.mkdir(parents=True, exist_ok=True)
        alternatives = "|".join(re.escape(p) for p in sorted(self.mounts, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![\w./-])({alternatives})(?=[/\"'\s]|$)")

    def rewrite(self, text: str) -> str:
        return self._pattern.sub(lambda m: str(self.mounts[m.group(1)]), text)

    def writable(self, path: str, what: str, given: list[str]) -> Path:
        """The local file of an absolute path the pod writes; refuses one on the read-only root filesystem,
        and one that nothing `given` to the pod (arguments, source, environment) names, itself or a folder
        above it below its mount: the pod's code has it compiled in, and only the text given to the pod can
        be moved into the pod's folder (the code would write this machine's own path)."""
        local = self.rewrite(path)
        if local == path:
            raise PodSetupError(f"{what} {path!r} is under no volume mount: the container's root filesystem is "
                                "read-only (readOnlyRootFilesystem), so the pod could not write it")
        mount = next(m for m in sorted(self.mounts, key=len, reverse=True) if path.startswith(m + "/"))
        candidates = [path]
        while (parent := candidates[-1].rsplit("/", 1)[0]) != mount:
            candidates.append(parent)
        if not any(c in text for c in candidates for text in given):
            raise PodSetupError(f"{what} {path!r}: the template passes this path to the pod nowhere (arguments, "
                                "source, environment), so the harness cannot place it in the pod's volume; name it "
                                "in the template (e.g. an --out argument)")
        return Path(local)


def _environment(container: dict[str, Any], paths: PodPaths, secrets: dict[tuple[str, str], str],
                 node_env: dict[str, str]) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **node_env,
           "PYTHONPATH": os.pathsep.join([str(POD_SITE), str(REPO)]),
           "ARGO_PROGRESS_FILE": paths.rewrite(ARGO_PROGRESS_PATH)}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = paths.rewrite(item["value"])
            continue
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            raise PodSetupError(f"env {item['name']}: only value and secretKeyRef are supported by the harness")
        value = secrets.get((ref["name"], ref["key"]))
        if value is None and not ref.get("optional"):
            raise PodSetupError(f"env {item['name']}: Secret {ref['name']!r} has no key {ref['key']!r} "
                                "(the kubelet would not start the container)")
        if value is not None:
            env[item["name"]] = value
    return env


def run_pod(template: dict[str, Any], inputs: dict[str, str], root: Path, secrets: dict[tuple[str, str], str],
            node_env: dict[str, str], timeout_s: float) -> PodResult:
    """Run `template` (a script or container template) with its input parameters `inputs`."""
    container = template.get("script") or template.get("container")
    if container is None:
        raise PodSetupError(f"template {template['name']}: neither script nor container")
    paths = PodPaths(root, container.get("volumeMounts", []))
    scope = {f"inputs.parameters.{name}": value for name, value in inputs.items()}
    scope["inputs.parameters"] = json.dumps([{"name": n, "value": v} for n, v in inputs.items()])
    argv = [paths.rewrite(substitute(a, scope)) for a in [*container.get("command", []), *container.get("args", [])]]
    if "script" in template:
        script = Path(paths.rewrite(SCRIPT_PATH))
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(paths.rewrite(substitute(container["source"], scope)))
        argv.append(str(script))
    if argv and argv[0] == "python":
        argv[0] = sys.executable
    env = _environment(container, paths, secrets, node_env)
    given = [*container.get("command", []), *container.get("args", []), container.get("source", ""),
             *(item.get("value", "") for item in container.get("env", []))]
    outputs = template.get("outputs", {})
    parameter_files = {p["name"]: paths.writable(p["valueFrom"]["path"], f"output parameter {p['name']}", given)
                       for p in outputs.get("parameters", [])}
    artifact_files = {a["name"]: paths.writable(a["path"], f"output artifact {a['name']}", given)
                      for a in outputs.get("artifacts", [])}
    deadline = float(template.get("activeDeadlineSeconds", timeout_s))
    log = root / "log.txt"
    started = time.monotonic()
    limit = min(deadline, timeout_s)
    # In a session of its own: stopped with its children when the block ends, however it ends.
    with log.open("wb") as out, process_in_own_session(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                                       cwd=paths.root) as proc:
        try:
            code = proc.wait(timeout=limit)
            message = "" if code == 0 else f"Error (exit code {code})"
        except subprocess.TimeoutExpired:
            code, message = -9, f"Pod was active on the node longer than the deadline ({limit:.0f}s)"
    result = PodResult("Succeeded" if code == 0 else "Failed", code, message, root=root, log=log,
                       duration_s=round(time.monotonic() - started, 2))
    for p in outputs.get("parameters", []):
        file = parameter_files[p["name"]]
        if file.is_file():
            result.outputs[p["name"]] = file.read_text()
        elif "default" in p["valueFrom"]:
            result.outputs[p["name"]] = p["valueFrom"]["default"]
        elif result.phase == "Succeeded":
            result.phase, result.message = "Failed", f"output parameter {p['name']}: no file {p['valueFrom']['path']}"
    for a in outputs.get("artifacts", []):
        if artifact_files[a["name"]].exists():
            result.artifacts[a["name"]] = artifact_files[a["name"]]
        elif not a.get("optional") and result.phase == "Succeeded":
            result.phase, result.message = "Failed", f"output artifact {a['name']}: no file {a['path']}"
    return result
